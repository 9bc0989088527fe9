/// @file
/// What a cell gives the fused recurrent kernel (nn/recurrent_kernel.hpp): its sizes, the
/// parameters it declares, how the kernel applies its recurrent weights, and its elementwise rows
/// forward and backward. Built-in cells (nn/cells/) and users' cells are written against this
/// contract and reach it through nn::CellAdapter (nn/cell.hpp); nothing here knows the kernel.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor/tensor.hpp"

namespace xgrad::nn {

/// One parameter a cell declares, for one layer and direction. Every cell also has weight_ih
/// (gates * H, layer input) and, with bias, bias_ih (gates * H): the layer owns those, because it
/// applies them to all steps at once.
struct CellParameter {
    std::string name;      ///< PyTorch's name without the layer suffix ("weight_hh"); the layer appends "_l0", "_l1_reverse"
    /// Its shape at the hidden size the cell was asked about (weight_hh: (gates * H, H)).
    Shape shape;
    bool is_bias = false;  ///< created only with bias(true)
};

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

/// Checks that a cell can run in the kernel: it has rows, gates and states, and with a recurrent
/// GEMM its first parameter is weight_hh (gates * H, H) and its first bias bias_hh (gates * H).
/// Throws std::invalid_argument naming `who`.
template <class T>
void check_fused_cell(std::string_view who, const FusedCell<T>& cell, std::size_t hidden);

}  // namespace xgrad::nn
