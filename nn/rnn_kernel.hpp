// The handwritten-BPTT Elman RNN kernel: forward over the whole sequence with BLAS GEMMs into
// preallocated buffers, and the backward recurrences
//   δh_t = ∂l/∂h_t + W_hhᵀ δa_{t+1},  δa_t = δh_t ⊙ φ'(a_t),
//   dW_ih = Σ δa_t x_tᵀ,  dW_hh = Σ δa_t h_{t-1}ᵀ,  db = Σ δa_t,  dx_t = W_ihᵀ δa_t,  dh_0 = W_hhᵀ δa_1
// for batched, multi-layer, bidirectional sequences with per-sequence lengths. Time-major:
// input (T, B, input_size), h0 and h_n (num_layers * directions, B, H), output (T, B, directions * H).
//
// Two ways to use it: the plain functions rnn_forward / rnn_backward on arrays, and rnn_fused,
// one op in the autograd graph (what nn::RNN runs with RNNImplementation::fused).
//
//   xgrad::nn::RNNCache<float> cache;
//   auto [output, h_n] = xgrad::nn::rnn_forward(spec, weights, input, nullptr, {}, {}, cache);
//   auto grads = xgrad::nn::rnn_backward(spec, weights, cache, d_output.data(), nullptr);
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "../autograd/graph.hpp"
#include "../tensor/tensor.hpp"

namespace xgrad::nn {

enum class Nonlinearity { tanh, relu };

struct RNNSpec {
    std::size_t input_size = 0, hidden_size = 0, num_layers = 1;
    bool bias = true, bidirectional = false;
    Nonlinearity nonlinearity = Nonlinearity::tanh;

    std::size_t directions() const { return bidirectional ? 2 : 1; }
    std::size_t layer_input_size(std::size_t layer) const {
        return layer == 0 ? input_size : hidden_size * directions();
    }
};

// Checks an RNN call and throws ShapeError / std::invalid_argument naming `who`, the argument
// and the shapes: input (T, B, input_size), or (B, T, input_size) when batch_first; h0
// (num_layers * directions, B, H) if given; lengths empty or one per sequence, each in [0, T].
void check_rnn_args(std::string_view who, const RNNSpec& spec, const Shape& input, bool batch_first,
                    const Shape* h0, const std::vector<std::int64_t>& lengths);

// Raw pointers to each (layer, direction)'s weights, index layer * directions + direction, in
// PyTorch's layouts: weight_ih (H, layer input), weight_hh (H, H), bias_ih and bias_hh (H); the
// bias vectors stay empty without bias.
template <class T>
struct RNNWeights {
    std::vector<const T*> weight_ih, weight_hh, bias_ih, bias_hh;
};

// What backward reads, written by forward. Reusing one cache across calls reuses its buffers.
template <class T>
struct RNNCache {
    std::size_t steps = 0, batch = 0;
    std::vector<std::int64_t> lengths;     // one per sequence
    std::vector<Tensor<T>> layer_inputs;   // per layer, (T, B, layer input), after inter-layer dropout
    // Per (layer, direction), (T + 1, B, H): the carried state, with h0 in slot 0 (forward) or slot
    // T (reverse) and the state after step t in slot t + 1 (forward) or slot t (reverse).
    std::vector<Tensor<T>> states;
    std::vector<Tensor<T>> dropout_masks;  // per layer below the top, (T, B, directions * H), scaled
};

template <class T>
struct RNNResult {
    Tensor<T> output;  // (T, B, directions * H), zero past each sequence's length
    Tensor<T> h_n;     // (num_layers * directions, B, H), each sequence's state at its own last step
};

// What nn::RNN::forward and rnn_fused return: output and h_n as graph values.
template <class T>
struct RNNOutput {
    Var<T> output;
    Var<T> h_n;
};

template <class T>
struct RNNGrads {
    Tensor<T> input;  // (T, B, input_size)
    Tensor<T> h0;     // (num_layers * directions, B, H)
    std::vector<Tensor<T>> weight_ih, weight_hh, bias_ih, bias_hh;  // per (layer, direction)
    Tensor<T> hidden_grad_norms;  // (num_layers * directions, T): ||∂L/∂h_t|| over the valid rows
};

// dropout_masks: empty, or one per layer below the top, multiplied into that layer's output.
template <class T>
RNNResult<T> rnn_forward(const RNNSpec& spec, const RNNWeights<T>& weights, const Tensor<T>& input,
                         const Tensor<T>* h0, const std::vector<std::int64_t>& lengths,
                         std::vector<Tensor<T>> dropout_masks, RNNCache<T>& cache);

// d_output (T, B, directions * H) and d_h_n (layers * directions, B, H) may each be null (zero).
// Neither is modified.
template <class T>
RNNGrads<T> rnn_backward(const RNNSpec& spec, const RNNWeights<T>& weights, const RNNCache<T>& cache,
                         const T* d_output, const T* d_h_n);

// The kernel as one graph op. params: per (layer, direction) weight_ih, weight_hh, then bias_ih,
// bias_hh with bias. h0 may be an empty Var. If `hidden_grad_norms` is given, backward stores
// RNNGrads::hidden_grad_norms there.
template <class T>
RNNOutput<T> rnn_fused(const RNNSpec& spec, const Var<T>& input, const Var<T>& h0,
                            const std::vector<Var<T>>& params, const std::vector<std::int64_t>& lengths,
                            std::vector<Tensor<T>> dropout_masks,
                            std::shared_ptr<Tensor<T>> hidden_grad_norms = nullptr);

}  // namespace xgrad::nn
