// The Elman cell: its graph step and its fused rows, side by side.
#include "elman.hpp"

#include <algorithm>

#include "cell_impl.hpp"

namespace xgrad::nn::cells {

// a = (W_ih x + b_ih) + W_hh h + b_hh;  h' = φ(a)
template <class T>
std::vector<Var<T>> Elman::step(const CellStep<T>& in) const {
    const Var<T> a = in.gates + linear(in.h_in, in.params[0], in.params[1]);
    return {nonlinearity == Nonlinearity::tanh ? tanh(a) : relu(a)};
}

// The kernel has added W_hh h + b_hh into the gates: h' = φ(a). Backward works from h' alone, so the
// kernel frees the gates after forward (backward_reads_gates = false).
template <class T>
void Elman::forward_row(const RowForward<T>& r) const {
    const std::size_t H = r.hidden;
    if (nonlinearity == Nonlinearity::tanh) {
        simd::tanh_inplace(r.gates, H);
    } else {
        for (std::size_t j = 0; j < H; ++j) r.gates[j] = std::max(r.gates[j], T(0));
    }
    std::copy_n(r.gates, H, r.next[0]);
}

// δa = δh ⊙ φ'(a), with φ' from h': 1 - h'² (tanh), [h' > 0] (relu); the kernel's GEMM carries δa to h_{t-1}.
template <class T>
void Elman::backward_row(const RowBackward<T>& r) const {
    const std::size_t H = r.hidden;
    const T* h = r.next[0];
    const T* dh = r.d_next[0];
    if (nonlinearity == Nonlinearity::tanh) {
        for (std::size_t j = 0; j < H; ++j) r.d_gates[j] = dh[j] * (T(1) - h[j] * h[j]);
    } else {
        for (std::size_t j = 0; j < H; ++j) r.d_gates[j] = h[j] > 0 ? dh[j] : T(0);
    }
    std::fill_n(r.d_previous[0], H, T(0));
}

XGRAD_INSTANTIATE_CELL(Elman)

}  // namespace xgrad::nn::cells
