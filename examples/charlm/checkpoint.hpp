// Training checkpoints: one safetensors file with the model's parameters ("model.*"), the
// optimizer's state ("optimizer.*"), the carried hidden state, and in its metadata the format
// version, configuration, vocabulary, step, data position and random-generator state: enough to
// resume training exactly. Written atomically, so a crash never leaves a half-written file.
#pragma once

#include <string>

#include "corpus.hpp"
#include "model.hpp"

namespace charlm {

inline constexpr int checkpoint_format_version = 1;

struct TrainingState {
    Config config;
    Vocabulary vocabulary;
    std::int64_t step = 0;
    std::size_t data_position = 0;  // offset inside every training stream
    std::size_t train_chars = 0;    // length of the training text it was trained on
    State carried;                  // the carried state: h, and c for an LSTM
};

void save_checkpoint(const std::string& path, const TrainingState& state, CharLM& model,
                     const xgrad::optim::Optimizer<float>& optimizer);

struct Checkpoint {
    std::string path;
    TrainingState state;
    xgrad::TensorFile<float> file;
};

// Validates format, version, metadata and the hidden state; throws InputError naming the file.
Checkpoint read_checkpoint(const std::string& path);
// The same for a file already parsed (`path` names it in messages).
Checkpoint checkpoint_from(const std::string& path, xgrad::TensorFile<float> file);
// Loads the model (and, if given, the optimizer) from a checkpoint; throws InputError on mismatch.
void restore(const Checkpoint& checkpoint, CharLM& model, xgrad::optim::Optimizer<float>* optimizer);

}  // namespace charlm
