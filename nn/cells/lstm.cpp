// The LSTM cell: its graph step; its fused rows are in lstm_rows.cpp.
#include "lstm.hpp"

#include "cell_impl.hpp"

namespace xgrad::nn::cells {

// c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c')
template <class T>
std::vector<Var<T>> LSTM::step(const CellStep<T>& in) const {
    const Var<T> a = in.gates + linear(in.h_in, in.params[0], in.params[1]);
    const Var<T> c = sigmoid(in.gate(a, 1)) * in.previous[1] + sigmoid(in.gate(a, 0)) * tanh(in.gate(a, 2));
    return {sigmoid(in.gate(a, 3)) * tanh(c), c};
}

XGRAD_FOR_EACH_ISA(template <class T> void lstm_forward_row(const RowForward<T>&);
                   template <class T> void lstm_backward_row(const RowBackward<T>&);)

// The rows (lstm_rows.cpp), in the copy for this CPU.
template <class T>
void LSTM::forward_row(const RowForward<T>& row) const {
    XGRAD_ISA_PICK(lstm_forward_row<T>)(row);
}

template <class T>
void LSTM::backward_row(const RowBackward<T>& row) const {
    XGRAD_ISA_PICK(lstm_backward_row<T>)(row);
}

XGRAD_INSTANTIATE_CELL(LSTM)

}  // namespace xgrad::nn::cells
