// The LSTM cell's fused rows, compiled once per instruction set (tensor/isa_kernels.hpp); the cell
// (lstm.cpp) calls the copy for this CPU.
#include "cell_rows.hpp"

namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE {

// i, f, o = σ(a), g = tanh(a) (the kernel has added W_hh h + b_hh);  c' = f c + i g;  h' = o tanh(c').
// The gates keep i, f, g, o for backward.
template <class T>
void lstm_forward_row(const RowForward<T>& r) {
    const std::size_t H = r.hidden;
    T* a = r.gates;
    const T* c_prev = r.previous[1];
    T *h = r.next[0], *c = r.next[1];
    simd::simd_for<T>(H, [&](auto lane, std::size_t j) {
        using V = decltype(lane);
        const V i = simd::sigmoid(simd::load<V>(a + j)), f = simd::sigmoid(simd::load<V>(a + H + j));
        const V g = simd::tanh(simd::load<V>(a + 2 * H + j)), o = simd::sigmoid(simd::load<V>(a + 3 * H + j));
        const V c_next = f * simd::load<V>(c_prev + j) + i * g;
        simd::store(a + j, i);
        simd::store(a + H + j, f);
        simd::store(a + 2 * H + j, g);
        simd::store(a + 3 * H + j, o);
        simd::store(c + j, c_next);
        simd::store(h + j, o * simd::tanh(c_next));
    });
}

// δc = δc' + δh o (1 - tanh²c');  δi = δc g i(1-i), δf = δc c f(1-f), δg = δc i (1-g²), δo = δh tanh(c') o(1-o);
// δc_prev = δc f; h_{t-1} gets its gradient through the kernel's W_hh GEMM only.
template <class T>
void lstm_backward_row(const RowBackward<T>& r) {
    const std::size_t H = r.hidden;
    const T* act = r.gates;
    const T *c_prev = r.previous[1], *c = r.next[1], *delta_h = r.d_next[0], *delta_c = r.d_next[1];
    T *d_gates = r.d_gates, *d_h_prev = r.d_previous[0], *d_c_prev = r.d_previous[1];
    simd::simd_for<T>(H, [&](auto lane, std::size_t j) {
        using V = decltype(lane);
        const V i = simd::load<V>(act + j), f = simd::load<V>(act + H + j);
        const V g = simd::load<V>(act + 2 * H + j), o = simd::load<V>(act + 3 * H + j);
        const V tc = simd::tanh(simd::load<V>(c + j)), dh = simd::load<V>(delta_h + j);
        const V dc = simd::load<V>(delta_c + j) + dh * o * (V(1) - tc * tc);
        simd::store(d_gates + j, dc * g * i * (V(1) - i));
        simd::store(d_gates + H + j, dc * simd::load<V>(c_prev + j) * f * (V(1) - f));
        simd::store(d_gates + 2 * H + j, dc * i * (V(1) - g * g));
        simd::store(d_gates + 3 * H + j, dh * tc * o * (V(1) - o));
        simd::store(d_c_prev + j, dc * f);
        simd::store(d_h_prev + j, V(0));
    });
}

XGRAD_INSTANTIATE_CELL_ROWS(lstm)

}  // namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE
