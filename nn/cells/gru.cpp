// The GRU cell: its graph step; its fused rows are in gru_rows.cpp.
#include "gru.hpp"

#include "cell_impl.hpp"

namespace xgrad::nn::cells {

// hp = W_hh h + b_hh;  r, z = σ(x_r + hp_r), σ(x_z + hp_z);  n = tanh(x_n + r hp_n);  h' = (1 - z) n + z h
template <class T>
std::vector<Var<T>> GRU::step(const CellStep<T>& in) const {
    const Var<T> hp = linear(in.h_in, in.params[0], in.params[1]);
    const Var<T> r = sigmoid(in.gate(in.gates, 0) + in.gate(hp, 0));
    const Var<T> z = sigmoid(in.gate(in.gates, 1) + in.gate(hp, 1));
    const Var<T> n = tanh(in.gate(in.gates, 2) + r * in.gate(hp, 2));
    return {(T(1) - z) * n + z * in.previous[0]};
}

XGRAD_FOR_EACH_ISA(template <class T> void gru_forward_row(const RowForward<T>&);
                   template <class T> void gru_backward_row(const RowBackward<T>&);)

// The rows (gru_rows.cpp), in the copy for this CPU.
template <class T>
void GRU::forward_row(const RowForward<T>& row) const {
    XGRAD_ISA_PICK(gru_forward_row<T>)(row);
}

template <class T>
void GRU::backward_row(const RowBackward<T>& row) const {
    XGRAD_ISA_PICK(gru_backward_row<T>)(row);
}

XGRAD_INSTANTIATE_CELL(GRU)

}  // namespace xgrad::nn::cells
