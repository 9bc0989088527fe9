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
/// It works on arrays only (nothing here knows the autograd graph). nn/rnn_fused.hpp wraps it as
/// one graph op, which the recurrent layers run with implementation fused.
///
/// @code
///   xgrad::nn::RNNCache<float> cache;
///   auto result = xgrad::nn::rnn_forward(cell, spec, weights, input, {}, {}, {}, cache);
///   auto grads = xgrad::nn::rnn_backward(cell, spec, weights, cache, d_output.data(), {});
/// @endcode
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor/tensor.hpp"

namespace xgrad::nn {

/// The structure of a recurrent layer, fixed when it is built.
struct RNNSpec {
    /// Features of the input, units per direction of each layer, and stacked layers.
    ///@{
    std::size_t input_size = 0, hidden_size = 0, num_layers = 1;
    ///@}
    /// Whether the layers have biases (bias_ih and the cell's), and a reverse direction beside the forward one.
    ///@{
    bool bias = true, bidirectional = false;
    ///@}

    /// 2 when bidirectional, else 1.
    std::size_t directions() const { return bidirectional ? 2 : 1; }
    /// Features entering `layer`: input_size for layer 0, the layer below's output (hidden_size * directions()) above it.
    std::size_t layer_input_size(std::size_t layer) const { return layer == 0 ? input_size : hidden_size * directions(); }
};

/// One parameter a cell declares, for one layer and direction. Every cell also has weight_ih
/// (gates * H, layer input) and, with bias, bias_ih (gates * H): the layer owns those, because it
/// applies them to all steps at once.
struct CellParameter {
    std::string name;      ///< PyTorch's name without the layer suffix ("weight_hh"); the layer appends "_l0", "_l1_reverse"
    /// Its shape at the hidden size the cell was asked about (weight_hh: (gates * H, H)).
    Shape shape;
    bool is_bias = false;  ///< created only with bias(true)
};

/// One (layer, direction)'s parameters in the order a layer registers them, PyTorch's: weight_ih,
/// the cell's weights, then (with bias) bias_ih and the cell's biases.
struct LayerParameter {
    std::string name;  ///< without the layer suffix
    /// Its shape in this layer (weight_ih's columns are the layer's input size).
    Shape shape;
    std::ptrdiff_t cell_index;  ///< into the cell's parameters(), or weight_ih / bias_ih below
    /// The cell_index values of the layer's own two parameters, weight_ih and bias_ih.
    ///@{
    enum : std::ptrdiff_t { weight_ih = -1, bias_ih = -2 };
    ///@}
};
/// The parameters of one (layer, direction) of a layer with this spec over a cell with these
/// parameters and `gates`, in registration order (see LayerParameter).
std::vector<LayerParameter> layer_parameters(const std::vector<CellParameter>& cell_parameters, std::size_t gates,
                                             const RNNSpec& spec, std::size_t layer);

/// How the kernel applies a cell's recurrent weights. With into_gates or separate, the cell's first
/// parameter must be weight_hh (gates * H, H) and its first bias parameter bias_hh (gates * H): the
/// kernel runs the recurrent GEMM each step and computes both gradients over all steps at once.
enum class RecurrentGemm {
    none,        ///< the cell applies its own recurrent parameters in its rows (IndRNN's u ⊙ h)
    into_gates,  ///< W_hh h_{t-1} + b_hh is added into the gates before the row sees them (Elman, LSTM)
    separate,    ///< W_hh h_{t-1} + b_hh is handed to the row on its own (GRU's r gates part of it)
};

/// One sequence's row at one step, forward. Pointers hold H values unless said otherwise.
template <class T>
struct RowForward {
    /// H, the number of values in each state.
    std::size_t hidden;
    T* gates;                            ///< gates * H: in, the step's pre-activations; out, what backward reads
    const T* recurrent;                  ///< gates * H: W_hh h_{t-1} + b_hh with RecurrentGemm::separate, else null
    T* saved;                            ///< saved_per_row(H) more values for backward, or null
    std::span<const T* const> previous;  ///< each state before the step; previous[0] is h_{t-1}
    std::span<T* const> next;            ///< each state after the step, written; next[0] is h_t
    std::span<const T* const> params;    ///< the cell's parameters in declared order (null: a bias without bias)
};

/// The same row, backward.
template <class T>
struct RowBackward {
    /// H, the number of values in each state.
    std::size_t hidden;
    const T* gates;                      ///< as forward left them; null for cells whose backward does not read them
    /// The saved_per_row(H) values forward_row wrote, or null when the cell saves none.
    const T* saved;
    /// As in RowForward: the states before and after the step and the cell's parameters.
    ///@{
    std::span<const T* const> previous, next, params;
    ///@}
    std::span<const T* const> d_next;    ///< ∂l/∂ each state after the step (all paths, incl. the output)
    T* d_gates;                          ///< out: ∂l/∂ the gates' pre-activations (gates * H)
    T* d_recurrent;                      ///< out with RecurrentGemm::separate: ∂l/∂ the recurrent part; else null
    std::span<T* const> d_previous;      ///< out (overwritten): ∂l/∂ each previous state, except through W_hh
    std::span<T* const> d_params;        ///< += ∂l/∂ each parameter the rows use (null: the kernel's GEMM owns it)
};

/// What the kernel needs of a cell: sizes, parameters and the elementwise rows. Built-in cells and
/// users' cells reach it through nn::CellAdapter (nn/cell.hpp).
template <class T>
class FusedCell {
  public:
    virtual ~FusedCell() = default;
    /// The cell's name, in error messages and the layer's type name ("LSTM").
    virtual std::string_view name() const = 0;
    virtual std::size_t gates() const = 0;   ///< blocks of H in the input projection
    virtual std::size_t states() const = 0;  ///< h, then any others (LSTM's c)
    /// The cell's own parameters for one layer and direction at this hidden size (see CellParameter).
    virtual std::vector<CellParameter> parameters(std::size_t hidden) const = 0;
    virtual bool has_fused() const = 0;      ///< whether the rows below exist
    /// How the kernel applies the recurrent weights (see RecurrentGemm).
    virtual RecurrentGemm recurrent_gemm() const = 0;
    /// Values per row and step that forward_row keeps for backward_row (RowForward::saved), 0 for none.
    virtual std::size_t saved_per_row(std::size_t hidden) const = 0;
    /// One row's step forward: writes `next` and whatever its backward reads. Rows must write every
    /// value they are given to write: the kernel does not clear its buffers first.
    virtual void forward_row(const RowForward<T>& row) const = 0;
    /// One row's step backward: writes d_gates, d_recurrent (with RecurrentGemm::separate) and
    /// d_previous in full, and adds into d_params.
    virtual void backward_row(const RowBackward<T>& row) const = 0;
    /// Whether several rows of a step may run at once on different threads: the rows touch nothing
    /// but what their arguments point to (no mutable members, no shared scratch). Off unless a cell
    /// says so; rows that add into parameters of their own are never split.
    virtual bool concurrent_rows() const { return false; }
    /// Whether backward_row may be handed d_gates over its own gates (each value read before it is
    /// written), so that a backward that consumes the cache needs no second T x B x gates*H buffer.
    virtual bool backward_in_place() const { return false; }
    /// Whether backward_row reads the gates forward left (false: it works from the states alone, as
    /// the Elman cell's φ' comes from h'). If not, forward frees them as soon as each layer has run
    /// and backward_row gets a null `gates` (a row that reads it anyway dereferences null), and
    /// training holds one T x B x gates*H buffer less at its peak.
    virtual bool backward_reads_gates() const { return true; }
};
// Rows must write every value they are given to write (next, d_gates, d_recurrent, d_previous):
// the kernel does not clear its buffers first.

/// Checks that a cell can run in the kernel: it has rows, gates and states, and with a recurrent
/// GEMM its first parameter is weight_hh (gates * H, H) and its first bias bias_hh (gates * H).
/// Throws std::invalid_argument naming `who`.
template <class T>
void check_fused_cell(std::string_view who, const FusedCell<T>& cell, std::size_t hidden);

/// Checks a recurrent call and throws ShapeError / std::invalid_argument naming `who`, the
/// argument and the shapes: input (T, B, input_size), or (B, T, input_size) when batch_first; each
/// given state (num_layers * directions, B, H); lengths empty or one per sequence in [0, T].
void check_rnn_args(std::string_view who, const RNNSpec& spec, const Shape& input, bool batch_first,
                    const std::vector<const Shape*>& states, const std::vector<std::int64_t>& lengths);

/// Raw pointers to each (layer, direction)'s weights, index layer * directions + direction, in
/// PyTorch's layouts: weight_ih (gates * H, layer input), bias_ih (gates * H; the list stays empty
/// without bias) and the cell's own parameters in declared order (null for biases without bias).
template <class T>
struct RNNWeights {
    /// weight_ih and bias_ih of each (layer, direction).
    ///@{
    std::vector<const T*> weight_ih, bias_ih;
    ///@}
    /// The cell's own parameters of each (layer, direction), in declared order.
    std::vector<std::vector<const T*>> cell;
};

/// What backward reads, written by forward. Reusing one cache across calls reuses its buffers.
template <class T>
struct RNNCache {
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

/// What rnn_forward() returns.
template <class T>
struct RNNResult {
    Tensor<T> output;                   ///< (T, B, directions * H), zero past each sequence's length
    std::vector<Tensor<T>> final_states;  ///< per state, (num_layers * directions, B, H), at each sequence's own last step
};

/// What rnn_backward() returns: the gradient of the loss with respect to every input of the kernel.
template <class T>
struct RNNGrads {
    Tensor<T> input;                        ///< (T, B, input_size)
    std::vector<Tensor<T>> initial_states;  ///< per state, (num_layers * directions, B, H)
    /// Per (layer, direction), of weight_ih's and bias_ih's shapes (bias_ih empty without bias).
    ///@{
    std::vector<Tensor<T>> weight_ih, bias_ih;
    ///@}
    std::vector<std::vector<Tensor<T>>> cell;      ///< per (layer, direction), the cell's parameters (empty where absent)
    Tensor<T> hidden_grad_norms;  ///< (num_layers * directions, T): ||∂L/∂h_t|| over the valid rows
};

/// Runs the layer forward over the whole sequence, filling `cache` for rnn_backward.
/// input (T, B, input_size), time-major; lengths empty (every sequence runs T steps) or one per sequence.
/// initial_states: empty, or one per cell state, each null (zeros) or (layers * directions, B, H).
/// dropout_masks: empty, or one per layer below the top, multiplied into that layer's output. With
/// `ids` (T, B), the input is the one-hot encoding of those indices and `input` is ignored: the
/// input GEMM becomes a row gather.
/// Throws ShapeError / std::invalid_argument for a cell, weights or arguments that do not fit.
template <class T>
RNNResult<T> rnn_forward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& weights,
                         const Tensor<T>& input, const std::vector<const Tensor<T>*>& initial_states,
                         const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                         RNNCache<T>& cache, const Indices* ids = nullptr);

/// Backward through the sequence from the cache rnn_forward filled, with the same cell, spec and weights.
/// d_output (T, B, directions * H) and d_final_states (empty, or one per state, each null for zero,
/// else (layers * directions, B, H)) are not modified. Without need_input_grad (and for index
/// input) the input's gradient is not computed and RNNGrads::input stays empty.
template <class T>
RNNGrads<T> rnn_backward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& weights,
                         const RNNCache<T>& cache, const T* d_output, const std::vector<const T*>& d_final_states,
                         bool need_input_grad = true);
/// The same, consuming the cache: with a cell whose backward_in_place() is true, the gate
/// gradients are written over the saved gates instead of into a buffer of their own (the largest
/// of a step, T x B x gates*H). The cache is spent afterwards.
template <class T>
RNNGrads<T> rnn_backward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& weights,
                         RNNCache<T>&& cache, const T* d_output, const std::vector<const T*>& d_final_states,
                         bool need_input_grad = true);

/// Checks one-hot indices (T, B) against an input size, naming `who`.
/// ShapeError unless 2-D; std::invalid_argument for an index outside [0, input_size).
void check_rnn_ids(std::string_view who, const Indices& ids, std::size_t input_size);

}  // namespace xgrad::nn
