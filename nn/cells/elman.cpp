// The Elman cell: its graph step; its fused rows are in elman_rows.cpp.
#include "elman.hpp"

#include "cell_impl.hpp"

namespace xgrad::nn::cells {

// a = (W_ih x + b_ih) + W_hh h + b_hh;  h' = φ(a)
template <class T>
std::vector<Var<T>> Elman::step(const CellStep<T>& in) const {
    const Var<T> a = in.gates + linear(in.h_in, in.params[0], in.params[1]);
    return {nonlinearity == Nonlinearity::tanh ? tanh(a) : relu(a)};
}

XGRAD_FOR_EACH_ISA(template <class T> void elman_forward_row(const RowForward<T>&, bool relu);
                   template <class T> void elman_backward_row(const RowBackward<T>&, bool relu);)

// The rows (elman_rows.cpp), in the copy for this CPU.
template <class T>
void Elman::forward_row(const RowForward<T>& row) const {
    XGRAD_ISA_PICK(elman_forward_row<T>)(row, nonlinearity == Nonlinearity::relu);
}

template <class T>
void Elman::backward_row(const RowBackward<T>& row) const {
    XGRAD_ISA_PICK(elman_backward_row<T>)(row, nonlinearity == Nonlinearity::relu);
}

XGRAD_INSTANTIATE_CELL(Elman)

}  // namespace xgrad::nn::cells
