/// @file
/// The LSTM cell, gates i, f, g, o in PyTorch's order:
/// @code{.unparsed}
///   i, f, o = σ(W_i· x + b_i· + W_h· h + b_h·),  g = tanh(W_ig x + b_ig + W_hg h + b_hg),
///   c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c').
/// @endcode
#pragma once

#include "../cell.hpp"

namespace xgrad::nn::cells {

/// The LSTM cell, the cell of nn::LSTM and nn::LSTMCell: four gate blocks (i, f, g, o) and two
/// states (h, c). Its members are what nn/cell.hpp describes.
struct LSTM {
    /// The module's type name, "LSTM".
    static constexpr std::string_view name = "LSTM";
    /// Four gate blocks of H (i, f, g, o) and two states (h, c).
    ///@{
    static constexpr std::size_t gates = 4, states = 2;  // h, c
    ///@}
    /// The kernel adds W_hh h_{t-1} + b_hh into the gates before the row applies σ and tanh.
    static constexpr RecurrentGemm recurrent_gemm = RecurrentGemm::into_gates;
    static constexpr bool concurrent_rows = true;  ///< rows touch only their arguments: the kernel may split them
    static constexpr bool backward_in_place = true;  ///< each lane loads its gates before storing their gradients

    /// weight_hh (4H, H) and bias_hh (4H), as PyTorch's.
    std::vector<CellParameter> parameters(std::size_t hidden) const { return recurrent_matrix_parameters(gates, hidden); }
    /// (h', c') with primitive ops.
    template <class T> std::vector<Var<T>> step(const CellStep<T>& in) const;
    /// One row: the activated gates (kept for backward), c' and h'.
    template <class T> void forward_row(const RowForward<T>& row) const;
    /// One row's gate gradients and δc_{t-1}; h_{t-1}'s gradient comes through the kernel's W_hh GEMM.
    template <class T> void backward_row(const RowBackward<T>& row) const;
};

}  // namespace xgrad::nn::cells
