/// @file
/// The fused recurrent kernel with handwritten BPTT, over any cell that supplies its row-wise
/// forward and backward (nn/cells/ holds the built-in ones): forward over the whole sequence with
/// BLAS GEMMs into preallocated buffers (every step's input projection in one GEMM, the recurrent
/// GEMM per step), and backward through the recurrences. For the Elman cell, a_t = W_ih x_t + b_ih +
/// W_hh h_{t-1} + b_hh and h_t = φ(a_t):
/// @code{.unparsed}
///   δh_t = ∂l/∂h_t + W_hhᵀ δa_{t+1},  δa_t = δh_t ⊙ φ'(a_t),
///   dW_ih = Σ δa_t x_tᵀ,  dW_hh = Σ δa_t h_{t-1}ᵀ,  db = Σ δa_t,  dx_t = W_ihᵀ δa_t,  dh_0 = W_hhᵀ δa_1.
/// @endcode
/// The kernel owns everything but the cell's elementwise math: layers, directions, per-sequence
/// lengths (past its length a sequence carries its states and outputs zero), inter-layer dropout
/// masks, the GEMMs and the weight gradients. Time-major: input (T, B, input_size), states
/// (num_layers * directions, B, H), output (T, B, directions * H).
///
/// It works on arrays only (nothing here knows the autograd graph). nn/recurrent_fused.hpp wraps it as
/// one graph op, which the recurrent layers run with implementation fused. The cell's side of it is
/// nn/fused_cell.hpp; the layer's structure and parameter layout, nn/recurrent_layout.hpp.
///
/// @code
///   xgrad::nn::RecurrentCache<float> cache;
///   auto result = xgrad::nn::recurrent_forward(cell, spec, weights, input, {}, {}, {}, cache);
///   auto grads = xgrad::nn::recurrent_backward(cell, spec, weights, cache, d_output.data(), {});
/// @endcode
#pragma once

#include <cstdint>
#include <vector>

#include "../tensor/tensor.hpp"
#include "fused_cell.hpp"
#include "recurrent_layout.hpp"

namespace xgrad::nn {

/// Raw pointers to each (layer, direction)'s weights, index layer * directions + direction, in
/// PyTorch's layouts (see DirectionParameters): bias_ih and the cell's biases null without bias.
template <class T>
using RecurrentWeights = std::vector<DirectionParameters<const T*>>;

/// What backward reads, written by forward. Reusing one cache across calls reuses its buffers.
template <class T>
struct RecurrentCache {
    /// T and B of the call that filled the cache.
    ///@{
    std::size_t steps = 0, batch = 0;
    ///@}
    std::vector<std::int64_t> lengths;     ///< one per sequence
    std::vector<Tensor<T>> layer_inputs;   ///< per layer, (T, B, layer input), after inter-layer dropout
    /// Per (layer, direction, state), index (layer * directions + direction) * states + state,
    /// (T + 1, B, H): the state before step 0 in slot 0 (forward) or slot T (reverse), the state
    /// after step t in slot t + 1 (forward) or slot t (reverse).
    std::vector<Tensor<T>> states;
    std::vector<Tensor<T>> gates;          ///< per (layer, direction), (T, B, gates * H), as the rows left them (empty when
                                           ///< the cell's backward does not read them)
    std::vector<Tensor<T>> saved;          ///< per (layer, direction), (T, B, saved_per_row) when the cell saves any
    std::vector<Tensor<T>> dropout_masks;  ///< per layer below the top, (T, B, directions * H), scaled
    bool one_hot = false;                  ///< the input came as one-hot indices: then `ids` holds them
    Indices ids;                           ///< (T, B), and layer_inputs[0] is unused
};

/// What recurrent_forward() returns.
template <class T>
struct RecurrentResult {
    Tensor<T> output;                   ///< (T, B, directions * H), zero past each sequence's length
    std::vector<Tensor<T>> final_states;  ///< per state, (num_layers * directions, B, H), at each sequence's own last step
};

/// What recurrent_backward() returns: the gradient of the loss with respect to every input of the kernel.
template <class T>
struct RecurrentGrads {
    Tensor<T> input;                        ///< (T, B, input_size)
    std::vector<Tensor<T>> initial_states;  ///< per state, (num_layers * directions, B, H)
    /// Per (layer, direction), each parameter's gradient, of its shape (empty where the parameter is absent).
    std::vector<DirectionParameters<Tensor<T>>> params;
    Tensor<T> hidden_grad_norms;  ///< (num_layers * directions, T): ||∂L/∂h_t|| over the valid rows
};

/// Runs the layer forward over the whole sequence, filling `cache` for recurrent_backward.
/// input (T, B, input_size), time-major; lengths empty (every sequence runs T steps) or one per sequence.
/// initial_states: empty, or one per cell state, each null (zeros) or (layers * directions, B, H).
/// dropout_masks: empty, or one per layer below the top, multiplied into that layer's output. With
/// `ids` (T, B), the input is the one-hot encoding of those indices and `input` is ignored: the
/// input GEMM becomes a row gather.
/// Throws ShapeError / std::invalid_argument for a cell, weights or arguments that do not fit.
template <class T>
RecurrentResult<T> recurrent_forward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& weights,
                         const Tensor<T>& input, const std::vector<const Tensor<T>*>& initial_states,
                         const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                         RecurrentCache<T>& cache, const Indices* ids = nullptr);

/// Backward through the sequence from the cache recurrent_forward filled, with the same cell, spec and weights.
/// d_output (T, B, directions * H) and d_final_states (empty, or one per state, each null for zero,
/// else (layers * directions, B, H)) are not modified. Without need_input_grad (and for index
/// input) the input's gradient is not computed and RecurrentGrads::input stays empty.
template <class T>
RecurrentGrads<T> recurrent_backward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& weights,
                         const RecurrentCache<T>& cache, const T* d_output, const std::vector<const T*>& d_final_states,
                         bool need_input_grad = true);
/// The same, consuming the cache: with a cell whose backward_in_place() is true, the gate
/// gradients are written over the saved gates instead of into a buffer of their own (the largest
/// of a step, T x B x gates*H). The cache is spent afterwards.
template <class T>
RecurrentGrads<T> recurrent_backward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& weights,
                         RecurrentCache<T>&& cache, const T* d_output, const std::vector<const T*>& d_final_states,
                         bool need_input_grad = true);

}  // namespace xgrad::nn
