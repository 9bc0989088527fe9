// The GRU cell: its graph step and its fused rows, side by side.
#include "gru.hpp"

#include <algorithm>

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

// r, z = σ(a + hp), n = tanh(a_n + r hp_n), h' = (1 - z) n + z h, with hp = W_hh h + b_hh from the kernel.
// The gates keep r, z, n and `saved` keeps hp_n for backward.
template <class T>
void GRU::forward_row(const RowForward<T>& r) const {
    const std::size_t H = r.hidden;
    T* a = r.gates;
    const T *hw = r.recurrent, *h_prev = r.previous[0];
    T* h = r.next[0];
    for (std::size_t j = 0; j < 2 * H; ++j) a[j] += hw[j];
    rows::sigmoid_inplace(a, 2 * H);
    std::copy_n(hw + 2 * H, H, r.saved);
    for (std::size_t j = 0; j < H; ++j) a[2 * H + j] += a[j] * r.saved[j];
    rows::tanh_inplace(a + 2 * H, H);
    for (std::size_t j = 0; j < H; ++j) h[j] = (1 - a[H + j]) * a[2 * H + j] + a[H + j] * h_prev[j];
}

// δa_n = δh (1 - z)(1 - n²);  δr = δa_n hp_n r(1-r);  δz = δh (h - n) z(1-z);  the recurrent part of n gets δa_n r;
// δh_prev = δh z directly, plus the kernel's W_hh GEMM of the recurrent δ.
template <class T>
void GRU::backward_row(const RowBackward<T>& rb) const {
    const std::size_t H = rb.hidden;
    const T *act = rb.gates, *hn = rb.saved, *h_prev = rb.previous[0], *delta_h = rb.d_next[0];
    for (std::size_t j = 0; j < H; ++j) {
        const T r = act[j], z = act[H + j], n = act[2 * H + j];
        const T da_n = delta_h[j] * (1 - z) * (1 - n * n);
        rb.d_gates[j] = rb.d_recurrent[j] = da_n * hn[j] * r * (1 - r);
        rb.d_gates[H + j] = rb.d_recurrent[H + j] = delta_h[j] * (h_prev[j] - n) * z * (1 - z);
        rb.d_gates[2 * H + j] = da_n;
        rb.d_recurrent[2 * H + j] = da_n * r;
        rb.d_previous[0][j] = delta_h[j] * z;
    }
}

XGRAD_INSTANTIATE_CELL(GRU)

}  // namespace xgrad::nn::cells
