/// @file
/// A recurrent cell as a type. The layer machinery (nn::Recurrent, nn/recurrent.hpp) does
/// everything but the cell's own math: stacking, directions, batch_first, per-sequence lengths,
/// initial states, every dropout kind, zoneout, both implementations and per-step gradient norms.
/// A cell is a plain struct; nn/cells/ holds the built-in ones (Elman, LSTM, GRU) and
/// examples/indrnn_cell.hpp a user's own. What it declares:
///
/// @code
///   struct MyCell {
///       static constexpr std::string_view name = "MyCell";  // in error messages and the module's type name
///       static constexpr std::size_t gates = 2;              // W_ih is (gates * H, input): the layer projects
///                                                            // every step's input at once, with bias_ih
///       static constexpr std::size_t states = 1;             // h, then any others (LSTM: h, c)
///       // The cell's own parameters for one layer and direction, in registration order (after
///       // weight_ih; the biases after bias_ih). PyTorch's names where PyTorch has the cell.
///       std::vector<xgrad::nn::CellParameter> parameters(std::size_t hidden) const;
///       // One step with primitive ops (the graph path): the states after the step, h first.
///       template <class T> std::vector<xgrad::Var<T>> step(const xgrad::nn::CellStep<T>& in) const;
///
///       // Optional, for implementation(fused): the handwritten row-wise forward and backward
///       // (nn/fused_cell.hpp's RowForward / RowBackward), plus how the kernel applies W_hh and how
///       // many values per row the forward keeps for the backward.
///       static constexpr xgrad::nn::RecurrentGemm recurrent_gemm = xgrad::nn::RecurrentGemm::none;
///       std::size_t saved_per_row(std::size_t hidden) const;
///       template <class T> void forward_row(const xgrad::nn::RowForward<T>& row) const;
///       template <class T> void backward_row(const xgrad::nn::RowBackward<T>& row) const;
///       // Rows that touch only what their arguments point to may run on several threads at once
///       // (set_blas_threads): say so, and the kernel splits a step's rows between them.
///       static constexpr bool concurrent_rows = true;
///       // A backward_row that reads each of its gates before writing that gate's gradient may be
///       // handed d_gates over gates: say so, and training needs one T x B x gates*H buffer less.
///       static constexpr bool backward_in_place = true;
///       // A backward_row that never reads the gates (it works from the states) lets forward free them:
///       // training then holds one T x B x gates*H buffer less at its peak.
///       static constexpr bool backward_reads_gates = false;
///   };
///   xgrad::nn::Recurrent<MyCell> layer(xgrad::nn::RecurrentOptions(input, hidden).num_layers(2));
/// @endcode
///
/// xgrad::nn::verify_cell_gradients (nn/verify.hpp) cross-checks a cell's rows against its graph
/// step and finite differences.
#pragma once

#include <concepts>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../autograd/graph.hpp"
#include "../autograd/ops.hpp"
#include "fused_cell.hpp"

namespace xgrad::nn {

/// The activation of cells that offer a choice (the Elman cell, PyTorch's `nonlinearity`).
enum class Nonlinearity { tanh, relu };
/// @var Nonlinearity::tanh
/// φ = tanh, PyTorch's default.
/// @var Nonlinearity::relu
/// φ = max(0, ·).

/// What a cell's graph step receives, for a batch of B rows.
template <class T>
struct CellStep {
    Var<T> gates;                  ///< (B, gates * H): W_ih x_t + b_ih
    Var<T> h_in;                   ///< (B, H): h_{t-1} as fed to the recurrent weights (after recurrent dropout)
    std::vector<Var<T>> previous;  ///< the states before the step, each (B, H); previous[0] is h_{t-1}
    std::vector<Var<T>> params;    ///< the cell's parameters in declared order; empty Vars for biases without bias
    /// H, the layer's hidden size.
    std::size_t hidden = 0;

    /// Block i (of H columns) of a (B, k * H) value, e.g. one gate of `gates`.
    Var<T> gate(const Var<T>& v, std::size_t i) const { return narrow(v, -1, i * hidden, hidden); }
};

/// Any cell, for one element type: what the layer machinery and the kernel call.
template <class T>
class AnyCell : public FusedCell<T> {
  public:
    /// One step with primitive ops (the graph path): the states after the step, each (B, H), h first.
    virtual std::vector<Var<T>> step(const CellStep<T>& in) const = 0;
};

/// Whether cell type `Cell` has the optional fused rows (forward_row and backward_row) for element type T.
template <class Cell, class T>
concept HasFusedRows = requires(const Cell& cell, const RowForward<T>& forward, const RowBackward<T>& backward) {
    cell.forward_row(forward);
    cell.backward_row(backward);
};

/// Wraps a cell struct as an AnyCell<T>.
/// What the struct leaves out takes its default: no fused rows (they throw std::logic_error),
/// RecurrentGemm::none, no concurrent rows, no in-place backward, gates read by backward, nothing saved.
template <class T, class Cell>
class CellAdapter final : public AnyCell<T> {
  public:
    /// Holds a copy of `cell` (its settings, such as the Elman cell's nonlinearity).
    explicit CellAdapter(Cell cell = {}) : cell_(std::move(cell)) {}
    /// The wrapped cell struct.
    const Cell& cell() const { return cell_; }

    std::string_view name() const override { return Cell::name; }
    std::size_t gates() const override { return Cell::gates; }
    std::size_t states() const override { return Cell::states; }
    std::vector<CellParameter> parameters(std::size_t hidden) const override { return cell_.parameters(hidden); }
    std::vector<Var<T>> step(const CellStep<T>& in) const override { return cell_.step(in); }

    bool has_fused() const override { return HasFusedRows<Cell, T>; }
    RecurrentGemm recurrent_gemm() const override {
        if constexpr (requires { Cell::recurrent_gemm; }) {
            return Cell::recurrent_gemm;
        } else {
            return RecurrentGemm::none;
        }
    }
    bool concurrent_rows() const override {
        if constexpr (requires { Cell::concurrent_rows; }) {
            return Cell::concurrent_rows;
        } else {
            return false;
        }
    }
    bool backward_in_place() const override {
        if constexpr (requires { Cell::backward_in_place; }) {
            return Cell::backward_in_place;
        } else {
            return false;
        }
    }
    bool backward_reads_gates() const override {
        if constexpr (requires { Cell::backward_reads_gates; }) {
            return Cell::backward_reads_gates;
        } else {
            return true;
        }
    }
    std::size_t saved_per_row(std::size_t hidden) const override {
        if constexpr (requires(const Cell& c) { { c.saved_per_row(hidden) } -> std::convertible_to<std::size_t>; }) {
            return cell_.saved_per_row(hidden);
        } else {
            // A misdeclared one would silently save nothing, and the rows would write through a null pointer.
            static_assert(!requires { &Cell::saved_per_row; },
                          "a cell's saved_per_row must be callable as `std::size_t saved_per_row(std::size_t hidden) const`");
            return 0;
        }
    }
    void forward_row(const RowForward<T>& row) const override {
        if constexpr (HasFusedRows<Cell, T>) {
            cell_.forward_row(row);
        } else {
            no_rows();
        }
    }
    void backward_row(const RowBackward<T>& row) const override {
        if constexpr (HasFusedRows<Cell, T>) {
            cell_.backward_row(row);
        } else {
            no_rows();
        }
    }

  private:
    [[noreturn]] void no_rows() const {
        throw std::logic_error(std::string(Cell::name) + ": the cell has no fused rows (forward_row, backward_row)");
    }
    Cell cell_;
};

/// weight_hh (gates * H, H) and bias_hh (gates * H): the recurrent parameters of PyTorch's cells.
inline std::vector<CellParameter> recurrent_matrix_parameters(std::size_t gates, std::size_t hidden) {
    return {{"weight_hh", {gates * hidden, hidden}, false}, {"bias_hh", {gates * hidden}, true}};
}

/// A cell struct as a shared AnyCell<T>, what RecurrentBase and verify_recurrent_gradients take.
template <class T, class Cell>
std::shared_ptr<const AnyCell<T>> make_any_cell(Cell cell = {}) {
    return std::make_shared<CellAdapter<T, Cell>>(std::move(cell));
}

}  // namespace xgrad::nn
