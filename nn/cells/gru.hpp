/// @file
/// The GRU cell, gates r, z, n in PyTorch's order:
/// @code{.unparsed}
///   r, z = σ(W_i· x + b_i· + W_h· h + b_h·),  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
///   h' = (1 - z) ⊙ n + z ⊙ h.
/// @endcode
#pragma once

#include "../cell.hpp"

namespace xgrad::nn::cells {

/// The GRU cell, the cell of nn::GRU and nn::GRUCell: three gate blocks (r, z, n) and one state
/// (h). Its members are what nn/cell.hpp describes.
struct GRU {
    /// The module's type name, "GRU".
    static constexpr std::string_view name = "GRU";
    /// Three gate blocks of H (r, z, n) and one state.
    ///@{
    static constexpr std::size_t gates = 3, states = 1;
    ///@}
    static constexpr RecurrentGemm recurrent_gemm = RecurrentGemm::separate;  ///< r multiplies W_hn h + b_hn alone
    static constexpr bool concurrent_rows = true;  ///< rows touch only their arguments: the kernel may split them
    static constexpr bool backward_in_place = true;  ///< each lane loads its gates before storing their gradients

    /// weight_hh (3H, H) and bias_hh (3H), as PyTorch's.
    std::vector<CellParameter> parameters(std::size_t hidden) const { return recurrent_matrix_parameters(gates, hidden); }
    std::size_t saved_per_row(std::size_t hidden) const { return hidden; }  ///< W_hn h + b_hn, for δr
    /// h' with primitive ops.
    template <class T> std::vector<Var<T>> step(const CellStep<T>& in) const;
    /// One row: r, z, n (kept in the gates for backward), W_hn h + b_hn (saved) and h'.
    template <class T> void forward_row(const RowForward<T>& row) const;
    /// One row's gate gradients, the recurrent part's gradient and h_{t-1}'s direct share (δh z).
    template <class T> void backward_row(const RowBackward<T>& row) const;
};

}  // namespace xgrad::nn::cells
