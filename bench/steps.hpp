// One char-LM training step — one-hot characters -> recurrent layer -> Linear -> cross-entropy,
// forward, backward and an SGD update — in xgrad (graph or fused) and, when it is installed, in
// libtorch's C++ API, behind one interface so the benchmark times them the same way.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace bench {

struct Problem {
    std::string cell;  // rnn, lstm, gru
    std::size_t vocab, hidden, steps, batch;
    std::size_t checkpoint_every = 0;  // xgrad: the loss in checkpointed segments of this many steps (checkpointed_loss); 0: off
};

// A model and its data, built once; step() runs one training step.
struct Trainer {
    virtual ~Trainer() = default;
    virtual void step() = 0;
};

std::unique_ptr<Trainer> make_xgrad(const Problem& p, bool fused);
std::unique_ptr<Trainer> make_torch(const Problem& p);  // nullptr without libtorch

// The recurrent layer's step alone: dense input (T, B, vocab) -> one layer -> loss Σ output,
// forward and backward (input and weight gradients), no head and no update: the work oneDNN's RNN
// training primitives do, so that the three can be compared.
std::unique_ptr<Trainer> make_xgrad_layer(const Problem& p, bool fused);
std::unique_ptr<Trainer> make_torch_layer(const Problem& p);   // nullptr without libtorch
std::unique_ptr<Trainer> make_onednn_layer(const Problem& p);  // nullptr without oneDNN
std::string onednn_version();
bool have_torch();
void set_torch_threads(int threads);
std::string torch_version();

}  // namespace bench
