// The three commands of xgrad-charlm, and what they share: streamed evaluation in bits per character.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "corpus.hpp"
#include "model.hpp"

namespace charlm {

struct TrainArgs {
    std::string corpus = "/usr/share/games/fortunes";
    Config config;
    std::optional<std::int64_t> steps;   // total, counting a resumed checkpoint's steps
    std::optional<double> time_limit;    // seconds of this run
    std::int64_t eval_every = 500, save_every = 0;
    std::string out = "charlm.safetensors", resume, metrics;
    int threads = 0;                     // 0: as the environment sets BLAS
    bool detect_anomaly = false;         // check every op's output and every gradient for NaN/Inf
    std::vector<std::string> explicit_flags;  // configuration flags the user gave (checked against --resume)
    bool impl_given = false;                  // --impl may differ on resume: the same numbers either way
    bool checkpoint_activations = false;      // segments of ceil(sqrt(seq)) steps unless config.checkpoint_segment says
};

struct SampleArgs {
    std::string checkpoint, prime;
    std::size_t length = 500, top_k = 0;
    double temperature = 1.0;
    std::uint64_t seed = 1;
};

struct EvalArgs {
    std::string checkpoint, corpus;
};

int train(const TrainArgs& args);
int sample(const SampleArgs& args);
int evaluate(const EvalArgs& args);

// Bits per character of `ids` under the model, streamed in up to 64 contiguous streams with
// the state carried through each; every character but each stream's first is predicted.
double bits_per_char(CharLM& model, const std::vector<std::int64_t>& ids);

// The next character's index, drawn from softmax(logits / temperature) restricted to the top_k
// most likely (0: all). Throws InputError for a temperature that is not positive and finite, or
// for non-finite logits, rather than drawing from NaN probabilities.
std::size_t draw_next(std::span<const float> logits, double temperature, std::size_t top_k, xgrad::Generator& gen);

std::vector<std::int64_t> encode(const Vocabulary& vocabulary, std::u32string_view text);

}  // namespace charlm
