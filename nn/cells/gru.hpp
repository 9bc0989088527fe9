// The GRU cell, gates r, z, n in PyTorch's order:
//   r, z = σ(W_i· x + b_i· + W_h· h + b_h·),  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
//   h' = (1 - z) ⊙ n + z ⊙ h.
#pragma once

#include "../cell.hpp"

namespace xgrad::nn::cells {

struct GRU {
    static constexpr std::string_view name = "GRU";
    static constexpr std::size_t gates = 3, states = 1;
    static constexpr RecurrentGemm recurrent_gemm = RecurrentGemm::separate;  // r multiplies W_hn h + b_hn alone
    static constexpr bool concurrent_rows = true;  // rows touch only their arguments: the kernel may split them
    static constexpr bool backward_in_place = true;  // each lane loads its gates before storing their gradients

    std::vector<CellParameter> parameters(std::size_t hidden) const { return recurrent_matrix_parameters(gates, hidden); }
    std::size_t saved_per_row(std::size_t hidden) const { return hidden; }  // W_hn h + b_hn, for δr
    template <class T> std::vector<Var<T>> step(const CellStep<T>& in) const;
    template <class T> void forward_row(const RowForward<T>& row) const;
    template <class T> void backward_row(const RowBackward<T>& row) const;
};

}  // namespace xgrad::nn::cells
