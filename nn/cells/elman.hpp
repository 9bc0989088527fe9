// The Elman cell (PyTorch's RNN): h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), φ = tanh or relu.
#pragma once

#include "../cell.hpp"

namespace xgrad::nn::cells {

struct Elman {
    static constexpr std::string_view name = "RNN";
    static constexpr std::size_t gates = 1, states = 1;
    static constexpr RecurrentGemm recurrent_gemm = RecurrentGemm::into_gates;
    static constexpr bool concurrent_rows = true;  // rows touch only their arguments: the kernel may split them
    static constexpr bool backward_in_place = true;  // each lane loads its gates before storing their gradients
    static constexpr bool backward_reads_gates = false;  // φ' comes from h'
    Nonlinearity nonlinearity = Nonlinearity::tanh;

    std::vector<CellParameter> parameters(std::size_t hidden) const { return recurrent_matrix_parameters(gates, hidden); }
    template <class T> std::vector<Var<T>> step(const CellStep<T>& in) const;
    template <class T> void forward_row(const RowForward<T>& row) const;
    template <class T> void backward_row(const RowBackward<T>& row) const;
};

}  // namespace xgrad::nn::cells
