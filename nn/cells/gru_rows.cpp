// The GRU cell's fused rows, compiled once per instruction set (tensor/isa_kernels.hpp); the cell
// (gru.cpp) calls the copy for this CPU.
#include "cell_rows.hpp"

namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE {

// r, z = σ(a + hp), n = tanh(a_n + r hp_n), h' = (1 - z) n + z h, with hp = W_hh h + b_hh from the kernel.
// The gates keep r, z, n and `saved` keeps hp_n for backward.
template <class T>
void gru_forward_row(const RowForward<T>& r) {
    const std::size_t H = r.hidden;
    T *a = r.gates, *hn_saved = r.saved, *h = r.next[0];
    const T *hw = r.recurrent, *h_prev = r.previous[0];
    simd::simd_for<T>(H, [&](auto lane, std::size_t j) {
        using V = decltype(lane);
        const V reset = simd::sigmoid(simd::load<V>(a + j) + simd::load<V>(hw + j));
        const V z = simd::sigmoid(simd::load<V>(a + H + j) + simd::load<V>(hw + H + j));
        const V hn = simd::load<V>(hw + 2 * H + j);
        const V n = simd::tanh(simd::load<V>(a + 2 * H + j) + reset * hn);
        simd::store(a + j, reset);
        simd::store(a + H + j, z);
        simd::store(a + 2 * H + j, n);
        simd::store(hn_saved + j, hn);
        simd::store(h + j, (V(1) - z) * n + z * simd::load<V>(h_prev + j));
    });
}

// δa_n = δh (1 - z)(1 - n²);  δr = δa_n hp_n r(1-r);  δz = δh (h - n) z(1-z);  the recurrent part of n gets δa_n r;
// δh_prev = δh z directly, plus the kernel's W_hh GEMM of the recurrent δ.
template <class T>
void gru_backward_row(const RowBackward<T>& rb) {
    const std::size_t H = rb.hidden;
    const T *act = rb.gates, *hn = rb.saved, *h_prev = rb.previous[0], *delta_h = rb.d_next[0];
    T *d_gates = rb.d_gates, *d_recurrent = rb.d_recurrent, *d_h_prev = rb.d_previous[0];
    simd::simd_for<T>(H, [&](auto lane, std::size_t j) {
        using V = decltype(lane);
        const V r = simd::load<V>(act + j), z = simd::load<V>(act + H + j), n = simd::load<V>(act + 2 * H + j);
        const V dh = simd::load<V>(delta_h + j);
        const V da_n = dh * (V(1) - z) * (V(1) - n * n);
        const V dr = da_n * simd::load<V>(hn + j) * r * (V(1) - r);
        const V dz = dh * (simd::load<V>(h_prev + j) - n) * z * (V(1) - z);
        simd::store(d_gates + j, dr);
        simd::store(d_recurrent + j, dr);
        simd::store(d_gates + H + j, dz);
        simd::store(d_recurrent + H + j, dz);
        simd::store(d_gates + 2 * H + j, da_n);
        simd::store(d_recurrent + 2 * H + j, da_n * r);
        simd::store(d_h_prev + j, dh * z);
    });
}

XGRAD_INSTANTIATE_CELL_ROWS(gru)

}  // namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE
