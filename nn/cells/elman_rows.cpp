// The Elman cell's fused rows, compiled once per instruction set (tensor/isa_kernels.hpp); the cell
// (elman.cpp) calls the copy for this CPU.
#include <algorithm>

#include "cell_rows.hpp"

namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE {

// The kernel has added W_hh h + b_hh into the gates: h' = φ(a), tanh or relu. Backward works from h'
// alone, so the kernel frees the gates after forward (backward_reads_gates = false).
template <class T>
void elman_forward_row(const RowForward<T>& r, bool relu) {
    const std::size_t H = r.hidden;
    if (!relu) {
        simd::tanh_inplace(r.gates, H);
    } else {
        for (std::size_t j = 0; j < H; ++j) r.gates[j] = std::max(r.gates[j], T(0));
    }
    std::copy_n(r.gates, H, r.next[0]);
}

// δa = δh ⊙ φ'(a), with φ' from h': 1 - h'² (tanh), [h' > 0] (relu); the kernel's GEMM carries δa to h_{t-1}.
template <class T>
void elman_backward_row(const RowBackward<T>& r, bool relu) {
    const std::size_t H = r.hidden;
    const T* h = r.next[0];
    const T* dh = r.d_next[0];
    if (!relu) {
        for (std::size_t j = 0; j < H; ++j) r.d_gates[j] = dh[j] * (T(1) - h[j] * h[j]);
    } else {
        for (std::size_t j = 0; j < H; ++j) r.d_gates[j] = h[j] > 0 ? dh[j] : T(0);
    }
    std::fill_n(r.d_previous[0], H, T(0));
}

template void elman_forward_row<float>(const RowForward<float>&, bool);
template void elman_backward_row<float>(const RowBackward<float>&, bool);
template void elman_forward_row<double>(const RowForward<double>&, bool);
template void elman_backward_row<double>(const RowBackward<double>&, bool);

}  // namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE
