// The LSTM cell, gates i, f, g, o in PyTorch's order:
//   i, f, o = σ(W_i· x + b_i· + W_h· h + b_h·),  g = tanh(W_ig x + b_ig + W_hg h + b_hg),
//   c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c').
#pragma once

#include "../cell.hpp"

namespace xgrad::nn::cells {

struct LSTM {
    static constexpr std::string_view name = "LSTM";
    static constexpr std::size_t gates = 4, states = 2;  // h, c
    static constexpr RecurrentGemm recurrent_gemm = RecurrentGemm::into_gates;
    static constexpr bool concurrent_rows = true;  // rows touch only their arguments: the kernel may split them
    static constexpr bool backward_in_place = true;  // each lane loads its gates before storing their gradients

    std::vector<CellParameter> parameters(std::size_t hidden) const { return recurrent_matrix_parameters(gates, hidden); }
    template <class T> std::vector<Var<T>> step(const CellStep<T>& in) const;
    template <class T> void forward_row(const RowForward<T>& row) const;
    template <class T> void backward_row(const RowBackward<T>& row) const;
};

}  // namespace xgrad::nn::cells
