// The fused recurrent kernels with handwritten BPTT, for Elman RNN, LSTM and GRU cells: forward
// over the whole sequence with BLAS GEMMs into preallocated buffers (every step's input projection
// in one GEMM), and backward through the recurrences. For the Elman cell, a_t = W_ih x_t + b_ih +
// W_hh h_{t-1} + b_hh and h_t = φ(a_t):
//   δh_t = ∂l/∂h_t + W_hhᵀ δa_{t+1},  δa_t = δh_t ⊙ φ'(a_t),
//   dW_ih = Σ δa_t x_tᵀ,  dW_hh = Σ δa_t h_{t-1}ᵀ,  db = Σ δa_t,  dx_t = W_ihᵀ δa_t,  dh_0 = W_hhᵀ δa_1.
// LSTM and GRU follow the same scheme with their gates (PyTorch's order: i, f, g, o and r, z, n),
// each gate's δ written beside its forward in the .cpp. Batched, multi-layer, bidirectional, with
// per-sequence lengths. Time-major: input (T, B, input_size), states (num_layers * directions, B, H),
// output (T, B, directions * H).
//
// It works on arrays only (nothing here knows the autograd graph): rnn_forward / rnn_backward.
// nn/rnn_fused.hpp wraps it as one graph op, which nn::RNN, nn::LSTM and nn::GRU run with
// implementation fused.
//
//   xgrad::nn::RNNCache<float> cache;
//   auto result = xgrad::nn::rnn_forward(spec, weights, input, nullptr, nullptr, {}, {}, cache);
//   auto grads = xgrad::nn::rnn_backward(spec, weights, cache, d_output.data(), nullptr, nullptr);
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "../tensor/tensor.hpp"

namespace xgrad::nn {

enum class Nonlinearity { tanh, relu };
enum class RecurrentMode { rnn, lstm, gru };

struct RNNSpec {
    RecurrentMode mode = RecurrentMode::rnn;
    std::size_t input_size = 0, hidden_size = 0, num_layers = 1;
    bool bias = true, bidirectional = false;
    Nonlinearity nonlinearity = Nonlinearity::tanh;  // Elman cells only

    std::size_t directions() const { return bidirectional ? 2 : 1; }
    std::size_t gates() const { return mode == RecurrentMode::lstm ? 4 : mode == RecurrentMode::gru ? 3 : 1; }
    bool has_cell_state() const { return mode == RecurrentMode::lstm; }
    std::size_t layer_input_size(std::size_t layer) const {
        return layer == 0 ? input_size : hidden_size * directions();
    }
};

// Checks a recurrent call and throws ShapeError / std::invalid_argument naming `who`, the
// argument and the shapes: input (T, B, input_size), or (B, T, input_size) when batch_first; h0
// and c0 (num_layers * directions, B, H) if given; lengths empty or one per sequence in [0, T].
void check_rnn_args(std::string_view who, const RNNSpec& spec, const Shape& input, bool batch_first,
                    const Shape* h0, const std::vector<std::int64_t>& lengths, const Shape* c0 = nullptr);

// Raw pointers to each (layer, direction)'s weights, index layer * directions + direction, in
// PyTorch's layouts: weight_ih (gates * H, layer input), weight_hh (gates * H, H), bias_ih and
// bias_hh (gates * H); the bias vectors stay empty without bias.
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
    std::vector<Tensor<T>> cells;          // the same for the LSTM cell state c
    std::vector<Tensor<T>> gates;          // per (layer, direction), (T, B, gates * H), after activation
    std::vector<Tensor<T>> hidden_n;       // GRU only: W_hn h_{t-1} + b_hn per step, (T, B, H)
    std::vector<Tensor<T>> dropout_masks;  // per layer below the top, (T, B, directions * H), scaled
    bool one_hot = false;                  // the input came as one-hot indices: then `ids` holds them
    Indices ids;                           // (T, B), and layer_inputs[0] is unused
};

template <class T>
struct RNNResult {
    Tensor<T> output;  // (T, B, directions * H), zero past each sequence's length
    Tensor<T> h_n;     // (num_layers * directions, B, H), each sequence's state at its own last step
    Tensor<T> c_n;     // LSTM only, likewise
};

template <class T>
struct RNNGrads {
    Tensor<T> input;  // (T, B, input_size)
    Tensor<T> h0, c0; // (num_layers * directions, B, H); c0 for LSTM only
    std::vector<Tensor<T>> weight_ih, weight_hh, bias_ih, bias_hh;  // per (layer, direction)
    Tensor<T> hidden_grad_norms;  // (num_layers * directions, T): ||∂L/∂h_t|| over the valid rows
};

// h0 and c0 may be null (zeros); c0 is for LSTM only. dropout_masks: empty, or one per layer
// below the top, multiplied into that layer's output. With `ids` (T, B), the input is the one-hot
// encoding of those indices and `input` is ignored: the input GEMM becomes a row gather.
template <class T>
RNNResult<T> rnn_forward(const RNNSpec& spec, const RNNWeights<T>& weights, const Tensor<T>& input,
                         const Tensor<T>* h0, const Tensor<T>* c0, const std::vector<std::int64_t>& lengths,
                         std::vector<Tensor<T>> dropout_masks, RNNCache<T>& cache, const Indices* ids = nullptr);

// d_output (T, B, directions * H), d_h_n and d_c_n (layers * directions, B, H) may each be null
// (zero). None of them is modified. Without need_input_grad (and for index input) the input's
// gradient is not computed and RNNGrads::input stays empty.
template <class T>
RNNGrads<T> rnn_backward(const RNNSpec& spec, const RNNWeights<T>& weights, const RNNCache<T>& cache,
                         const T* d_output, const T* d_h_n, const T* d_c_n, bool need_input_grad = true);

// Checks one-hot indices (T, B) against an input size, naming `who`.
void check_rnn_ids(std::string_view who, const Indices& ids, std::size_t input_size);

}  // namespace xgrad::nn
