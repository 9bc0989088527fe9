// Shared by the recurrent-layer tests: the grid of options over which the graph path and the
// fused kernel must agree on outputs, final states and every gradient.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

#include "../examples/indrnn_cell.hpp"

namespace grid {

using xgrad::Graph;
using xgrad::Tensor;
using xgrad::Var;
using xgrad::nn::Nonlinearity;
using xgrad::nn::RecurrentBase;
using xgrad::nn::RecurrentImplementation;
namespace nn = xgrad::nn;

constexpr std::size_t T_ = 5, B = 3, I = 4, H = 6;

struct Config {
    std::string cell;           // a built-in cell's name, "indrnn" (the example's user cell) or "leaky3"
    Nonlinearity nonlinearity;  // RNN only
    bool bias;
    std::size_t layers;
    bool bidirectional, batch_first, variable_lengths, with_h0;
    std::size_t batch = B, hidden = H;  // larger for the kernel's row splitting across threads
    std::size_t input = I;             // larger than T_ * batch for the kernel's in-place gather of indices
    std::string name() const {
        const std::string kind = cell != "rnn" ? cell : nonlinearity == Nonlinearity::tanh ? "rnn tanh" : "rnn relu";
        return fmt::format("{} bias={} layers={} bidirectional={} batch_first={} variable={} h0={} batch={} hidden={}", kind,
                           bias, layers, bidirectional, batch_first, variable_lengths, with_h0, batch, hidden);
    }
};


// A test cell with three states and its own rows, so that nothing in the layer or the kernel
// assumes at most two (h, c):  h' = tanh(g + u ⊙ h),  m' = m / 2 + h',  n' = n / 2 + m'.
struct LeakyMemoryCell {
    static constexpr std::string_view name = "LeakyMemory";
    static constexpr std::size_t gates = 1, states = 3;
    std::vector<nn::CellParameter> parameters(std::size_t hidden) const { return {{"weight_hh", {hidden}}}; }
    template <class T>
    std::vector<Var<T>> step(const nn::CellStep<T>& in) const {
        const Var<T> h = xgrad::tanh(in.gates + in.h_in * in.params[0]);
        const Var<T> m = in.previous[1] * T(0.5) + h;
        return {h, m, in.previous[2] * T(0.5) + m};
    }
    template <class T>
    void forward_row(const nn::RowForward<T>& r) const {
        for (std::size_t j = 0; j < r.hidden; ++j) {
            r.gates[j] = r.next[0][j] = std::tanh(r.gates[j] + r.params[0][j] * r.previous[0][j]);
            r.next[1][j] = r.previous[1][j] / 2 + r.next[0][j];
            r.next[2][j] = r.previous[2][j] / 2 + r.next[1][j];
        }
    }
    // δm = δm' + δn';  δh = δh' + δm;  δa = δh (1 - h'²);  δh_prev = δa u;  δm_prev = δm / 2;  δn_prev = δn' / 2
    template <class T>
    void backward_row(const nn::RowBackward<T>& r) const {
        for (std::size_t j = 0; j < r.hidden; ++j) {
            const T dm = r.d_next[1][j] + r.d_next[2][j], dh = r.d_next[0][j] + dm, h = r.gates[j];
            const T da = dh * (1 - h * h);
            r.d_gates[j] = da;
            r.d_previous[0][j] = da * r.params[0][j];
            r.d_previous[1][j] = dm / 2;
            r.d_previous[2][j] = r.d_next[2][j] / 2;
            r.d_params[0][j] += da * r.previous[0][j];
        }
    }
};

template <class T>
std::unique_ptr<RecurrentBase<T>> make_layer(const Config& c, xgrad::Generator& gen) {
    auto options = nn::RecurrentOptions(c.input, c.hidden).num_layers(c.layers).bias(c.bias).bidirectional(c.bidirectional).batch_first(c.batch_first);
    if (c.cell == "indrnn") return std::make_unique<nn::Recurrent<IndRNNCell, T>>(options, gen);
    if (c.cell == "leaky3") return std::make_unique<nn::Recurrent<LeakyMemoryCell, T>>(options, gen);
    return nn::make_recurrent<T>(c.cell, options.nonlinearity(c.nonlinearity), gen);
}

// Whether a built-in cell takes a nonlinearity (make_cell refuses relu for the others).
inline bool takes_nonlinearity(const std::string& cell) {
    try {
        nn::make_cell<double>(cell, Nonlinearity::relu);
        return true;
    } catch (const std::invalid_argument&) {
        return false;
    }
}

// Every combination of bias, 1/2 layers, bidirectional, batch_first, equal/variable lengths and
// h0 given/absent (and, for a cell that takes one, tanh/relu).
inline std::vector<Config> full_grid(const std::string& cell) {
    std::vector<Config> configs;
    const bool relu_too = cell != "indrnn" && cell != "leaky3" && takes_nonlinearity(cell);
    for (Nonlinearity f : {Nonlinearity::tanh, Nonlinearity::relu}) {
        if (f == Nonlinearity::relu && !relu_too) continue;
        for (bool bias : {true, false})
            for (std::size_t layers : {1, 2})
                for (bool bi : {false, true})
                    for (bool bf : {false, true})
                        for (bool var : {false, true})
                            for (bool h0 : {false, true}) configs.push_back({cell, f, bias, layers, bi, bf, var, h0});
    }
    return configs;
}

template <class T>
struct Run {
    Tensor<T> output, d_input;
    std::vector<Tensor<T>> states, d_states, d_params;
};

// Runs the layer both ways on the same data, loss = Σ output ⊙ w + Σ each final state ⊙ w_i, and
// compares outputs, every final state and every gradient (input, initial states, parameters).
template <class T>
void check_agreement(const Config& c, double tol) {
    xgrad::Generator gen(17);
    auto layer = make_layer<T>(c, gen);
    const std::size_t D = c.bidirectional ? 2 : 1, S = layer->cell().states(), drawn = std::max<std::size_t>(S, 2);
    const std::size_t batch = c.batch, hidden = c.hidden;
    const xgrad::Shape in_shape = c.batch_first ? xgrad::Shape{batch, T_, c.input} : xgrad::Shape{T_, batch, c.input};
    const xgrad::Shape out_shape = c.batch_first ? xgrad::Shape{batch, T_, D * hidden} : xgrad::Shape{T_, batch, D * hidden};
    const xgrad::Shape state = {c.layers * D, batch, hidden};
    const Tensor<T> input = xgrad::uniform<T>(in_shape, -1, 1, gen);
    std::vector<Tensor<T>> initial, w_state;
    for (std::size_t i = 0; i < drawn; ++i) initial.push_back(xgrad::uniform<T>(state, -1, 1, gen));
    const Tensor<T> w_out = xgrad::uniform<T>(out_shape, -1, 1, gen);
    for (std::size_t i = 0; i < drawn; ++i) w_state.push_back(xgrad::uniform<T>(state, -1, 1, gen));
    std::vector<std::int64_t> lengths;
    constexpr std::int64_t cycle[] = {5, 1, 3};
    for (std::size_t b = 0; c.variable_lengths && b < batch; ++b) lengths.push_back(cycle[b % 3]);
    Run<T> runs[2];
    for (int i = 0; i < 2; ++i) {
        layer->settings().implementation(i == 0 ? RecurrentImplementation::graph : RecurrentImplementation::fused);
        layer->zero_grad();
        Graph<T> g;
        Var<T> x = g.variable(input);
        std::vector<Var<T>> given;
        for (std::size_t s = 0; c.with_h0 && s < S; ++s) given.push_back(g.variable(initial[s]));
        auto r = layer->forward_states(x, given, lengths);
        auto loss = xgrad::sum(r.output * g.constant(w_out));
        for (std::size_t s = 0; s < S; ++s) loss = loss + xgrad::sum(r.states[s] * g.constant(w_state[s]));
        loss.backward();
        runs[i].output = r.output.value();
        runs[i].d_input = x.grad();
        for (std::size_t s = 0; s < S; ++s) runs[i].states.push_back(r.states[s].value());
        for (const auto& v : given) runs[i].d_states.push_back(v.grad());
        for (const auto& p : layer->parameters()) runs[i].d_params.push_back(p.grad());
    }
    auto close = [tol](const Tensor<T>& a, const Tensor<T>& b) {
        return a.shape() == b.shape() && (a.size() == 0 || xt::amax(xt::abs(a - b))() <= tol);
    };
    CHECK(close(runs[0].output, runs[1].output));
    CHECK(close(runs[0].d_input, runs[1].d_input));
    for (std::size_t s = 0; s < S; ++s) {
        CAPTURE(s);
        CHECK(close(runs[0].states[s], runs[1].states[s]));
        if (c.with_h0) CHECK(close(runs[0].d_states[s], runs[1].d_states[s]));
    }
    REQUIRE(runs[0].d_params.size() == runs[1].d_params.size());
    const auto names = layer->named_parameters();
    for (std::size_t i = 0; i < runs[0].d_params.size(); ++i) {
        CAPTURE(names[i].first);
        CHECK(close(runs[0].d_params[i], runs[1].d_params[i]));
        CHECK(xt::amax(xt::abs(runs[0].d_params[i]))() > 0);  // a vacuous comparison would hide a missing gradient
    }
}

}  // namespace grid
