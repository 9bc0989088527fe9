// Elman RNNs with libtorch's options and parameter names. nn::RNN runs either as a graph of
// primitive ops unrolled step by step (BPTT is whatever the tape computes) or as the fused
// handwritten-BPTT kernel (nn/rnn_kernel.hpp); the two give the same numbers.
//
//   xgrad::nn::RNN<float> rnn(xgrad::nn::RNNOptions(96, 256).num_layers(2).dropout(0.1));
//   auto [output, h_n] = rnn.forward(x);           // x (T, B, 96) -> output (T, B, 256), h_n (2, B, 256)
//   auto [out2, h2] = rnn.forward(x2, h_n.detach(), lengths);  // carry the state, variable lengths
//   rnn.options().implementation(xgrad::nn::RNNImplementation::fused);   // same model, fused kernel
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../autograd/graph.hpp"
#include "../tensor/random.hpp"
#include "module.hpp"
#include "rnn_kernel.hpp"

// A libtorch-style option: `opts.name(value)` sets and chains, `opts.name()` reads.
#define XGRAD_OPTION(type, name)                 \
  public:                                        \
    auto& name(const type& value) {              \
        name##_ = value;                         \
        return *this;                            \
    }                                            \
    const type& name() const { return name##_; } \
                                                 \
  private:                                       \
    type name##_

namespace xgrad::nn {

enum class RNNImplementation {
    graph,  // unrolled from primitive autograd ops
    fused,  // one op running the handwritten-BPTT kernel
};

struct RNNOptions {
    RNNOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    XGRAD_OPTION(std::size_t, input_size);
    XGRAD_OPTION(std::size_t, hidden_size);
    XGRAD_OPTION(std::size_t, num_layers) = 1;
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;
    XGRAD_OPTION(bool, bias) = true;
    XGRAD_OPTION(bool, batch_first) = false;  // input and output (B, T, features); h0 and h_n unchanged
    XGRAD_OPTION(double, dropout) = 0.0;      // on each layer's output but the last, in training
    XGRAD_OPTION(bool, bidirectional) = false;
    XGRAD_OPTION(RNNImplementation, implementation) = RNNImplementation::graph;
};

struct RNNCellOptions {
    RNNCellOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    XGRAD_OPTION(std::size_t, input_size);
    XGRAD_OPTION(std::size_t, hidden_size);
    XGRAD_OPTION(bool, bias) = true;
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;
};

// h' = φ(W_ih x + b_ih + W_hh h + b_hh) for one step: x (B, input_size), h (B, hidden_size).
template <class T>
class RNNCell : public Module<T> {
  public:
    explicit RNNCell(const RNNCellOptions& options, Generator& gen = default_generator());
    Var<T> forward(const Var<T>& input, const Var<T>& hx = {}) const;  // hx defaults to zeros
    const RNNCellOptions& options() const { return options_; }

    Parameter<T> weight_ih, weight_hh, bias_ih, bias_hh;

  private:
    RNNCellOptions options_;
};

template <class T>
class RNN : public Module<T> {
  public:
    // Every weight ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as torch.nn.RNN.
    explicit RNN(const RNNOptions& options, Generator& gen = default_generator());

    // input (T, B, input_size) (batch_first: (B, T, input_size)); h0 (num_layers * directions, B, H)
    // or empty for zeros; lengths: empty, or each sequence's length (past it the state is carried
    // unchanged and the output is zero; h_n is the state at the sequence's own last step).
    RNNOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const std::vector<std::int64_t>& lengths = {});

    RNNOptions& options() { return options_; }  // e.g. to switch the implementation
    const RNNOptions& options() const { return options_; }
    RNNSpec spec() const;
    // Per (layer, direction), in the kernel's order: weight_ih, weight_hh, then bias_ih, bias_hh.
    const std::vector<Parameter<T>>& flat_weights() const { return weights_; }
    // The generator inter-layer dropout masks come from (its state belongs in a checkpoint).
    Generator& dropout_generator() { return dropout_generator_; }

    // When on, backward records ||∂L/∂h_t|| for every layer, direction and step (both
    // implementations); read it with hidden_grad_norms() after backward: (layers * directions, T).
    void track_hidden_grads(bool on) { track_hidden_grads_ = on; }
    Tensor<T> hidden_grad_norms() const;

  private:
    RNNOutput<T> forward_graph(const Var<T>& input, const Var<T>& h0, const std::vector<std::int64_t>& lengths,
                               const std::vector<Tensor<T>>& masks);
    std::vector<Tensor<T>> dropout_masks(std::size_t steps, std::size_t batch);

    RNNOptions options_;
    std::vector<Parameter<T>> weights_;
    Generator dropout_generator_;
    bool track_hidden_grads_ = false;
    std::vector<Var<T>> tracked_hidden_;            // graph path: h_t per (k, t)
    std::shared_ptr<Tensor<T>> fused_grad_norms_;   // fused path: written by backward
};

extern template class RNNCell<float>;
extern template class RNNCell<double>;
extern template class RNN<float>;
extern template class RNN<double>;

}  // namespace xgrad::nn
