/// @file
/// The Elman cell (PyTorch's RNN): h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), φ = tanh or relu.
#pragma once

#include "../cell.hpp"

namespace xgrad::nn::cells {

/// The Elman cell (PyTorch's RNN), the cell of nn::RNN and nn::RNNCell: one gate (the
/// pre-activation a_t) and one state (h). Its members are what nn/cell.hpp describes.
struct Elman {
    /// The module's type name, "RNN" as PyTorch's.
    static constexpr std::string_view name = "RNN";
    /// One gate block of H (a_t) and one state (h).
    ///@{
    static constexpr std::size_t gates = 1, states = 1;
    ///@}
    /// The kernel adds W_hh h_{t-1} + b_hh into a_t before the row applies φ.
    static constexpr RecurrentGemm recurrent_gemm = RecurrentGemm::into_gates;
    static constexpr bool concurrent_rows = true;  ///< rows touch only their arguments: the kernel may split them
    static constexpr bool backward_in_place = true;  ///< each lane loads its gates before storing their gradients
    static constexpr bool backward_reads_gates = false;  ///< φ' comes from h'
    /// φ: tanh (the default) or relu, as PyTorch's `nonlinearity`.
    Nonlinearity nonlinearity = Nonlinearity::tanh;

    /// weight_hh (H, H) and bias_hh (H), as PyTorch's.
    std::vector<CellParameter> parameters(std::size_t hidden) const { return recurrent_matrix_parameters(gates, hidden); }
    /// h' = φ(gates + W_hh h_in + b_hh) with primitive ops.
    template <class T> std::vector<Var<T>> step(const CellStep<T>& in) const;
    /// h' = φ(a) for one row, a already holding W_hh h + b_hh.
    template <class T> void forward_row(const RowForward<T>& row) const;
    /// δa = δh' ⊙ φ'(a), φ' from h' (1 - h'² for tanh, [h' > 0] for relu).
    template <class T> void backward_row(const RowBackward<T>& row) const;
};

}  // namespace xgrad::nn::cells
