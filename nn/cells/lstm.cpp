// The LSTM cell: its graph step and its fused rows, side by side.
#include "lstm.hpp"

#include <algorithm>

#include "cell_impl.hpp"

namespace xgrad::nn::cells {

// c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c')
template <class T>
std::vector<Var<T>> LSTM::step(const CellStep<T>& in) const {
    const Var<T> a = in.gates + linear(in.h_in, in.params[0], in.params[1]);
    const Var<T> c = sigmoid(in.gate(a, 1)) * in.previous[1] + sigmoid(in.gate(a, 0)) * tanh(in.gate(a, 2));
    return {sigmoid(in.gate(a, 3)) * tanh(c), c};
}

// i, f, o = σ(a), g = tanh(a) (the kernel has added W_hh h + b_hh);  c' = f c + i g;  h' = o tanh(c').
// The gates keep i, f, g, o for backward.
template <class T>
void LSTM::forward_row(const RowForward<T>& r) const {
    const std::size_t H = r.hidden;
    T* a = r.gates;
    const T* c_prev = r.previous[1];
    T *h = r.next[0], *c = r.next[1];
    rows::sigmoid_inplace(a, 2 * H);
    rows::tanh_inplace(a + 2 * H, H);
    rows::sigmoid_inplace(a + 3 * H, H);
    for (std::size_t j = 0; j < H; ++j) h[j] = c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j];
    rows::tanh_inplace(h, H);
    for (std::size_t j = 0; j < H; ++j) h[j] *= a[3 * H + j];
}

// δc = δc' + δh o (1 - tanh²c');  δi = δc g i(1-i), δf = δc c f(1-f), δg = δc i (1-g²), δo = δh tanh(c') o(1-o);
// δc_prev = δc f; h_{t-1} gets its gradient through the kernel's W_hh GEMM only.
template <class T>
void LSTM::backward_row(const RowBackward<T>& r) const {
    const std::size_t H = r.hidden;
    const T* act = r.gates;
    const T *c_prev = r.previous[1], *c = r.next[1], *delta_h = r.d_next[0], *delta_c = r.d_next[1];
    T* d_c_prev = r.d_previous[1];
    std::copy_n(c, H, d_c_prev);  // tanh(c'), vectorized, through the output buffer
    rows::tanh_inplace(d_c_prev, H);
    for (std::size_t j = 0; j < H; ++j) {
        const T i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j], tc = d_c_prev[j];
        const T dc = delta_c[j] + delta_h[j] * o * (1 - tc * tc);
        r.d_gates[j] = dc * g * i * (1 - i);
        r.d_gates[H + j] = dc * c_prev[j] * f * (1 - f);
        r.d_gates[2 * H + j] = dc * i * (1 - g * g);
        r.d_gates[3 * H + j] = delta_h[j] * tc * o * (1 - o);
        d_c_prev[j] = dc * f;
    }
    std::fill_n(r.d_previous[0], H, T(0));
}

XGRAD_INSTANTIATE_CELL(LSTM)

}  // namespace xgrad::nn::cells
