// A recurrent cell written outside the library: the independently recurrent network (IndRNN, Li
// et al. 2018), whose recurrent weight is a vector, so each unit feeds back only itself:
//     h_t = relu(W_ih x_t + b_ih + u ⊙ h_{t-1}),   u = weight_hh, of shape (H).
// The graph step alone gives nn::Recurrent<IndRNNCell> every layer feature with the graph path;
// the two rows below add implementation(fused), cross-checked by nn::verify_cell_gradients.
// examples/custom_cell.cpp trains it; tests/test_recurrent_cells.cpp runs it through the same
// graph-versus-fused grid (tests/recurrent_grid.hpp) as the built-in cells.
#pragma once

#include <algorithm>
#include <string_view>
#include <vector>

#include <xgrad/xgrad.hpp>

struct IndRNNCell {
    static constexpr std::string_view name = "IndRNN";
    static constexpr std::size_t gates = 1, states = 1;

    std::vector<xgrad::nn::CellParameter> parameters(std::size_t hidden) const { return {{"weight_hh", {hidden}}}; }

    // h' = relu(a),  a = (W_ih x + b_ih) + u ⊙ h
    template <class T>
    std::vector<xgrad::Var<T>> step(const xgrad::nn::CellStep<T>& in) const {
        return {xgrad::relu(in.gates + in.h_in * in.params[0])};
    }

    // The gates keep h' for backward.
    template <class T>
    void forward_row(const xgrad::nn::RowForward<T>& r) const {
        const T *u = r.params[0], *h_prev = r.previous[0];
        for (std::size_t j = 0; j < r.hidden; ++j) r.next[0][j] = r.gates[j] = std::max(r.gates[j] + u[j] * h_prev[j], T(0));
    }

    // δa = δh [h' > 0];  δh_prev = δa ⊙ u;  δu += δa ⊙ h_prev
    template <class T>
    void backward_row(const xgrad::nn::RowBackward<T>& r) const {
        const T *u = r.params[0], *h_prev = r.previous[0], *h = r.gates, *dh = r.d_next[0];
        for (std::size_t j = 0; j < r.hidden; ++j) {
            const T da = h[j] > 0 ? dh[j] : T(0);
            r.d_gates[j] = da;
            r.d_previous[0][j] = da * u[j];
            r.d_params[0][j] += da * h_prev[j];
        }
    }
};
