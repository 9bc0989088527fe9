// Shared by the recurrent-layer tests: the grid of options over which the graph path and the
// fused kernel must agree on outputs, final states and every gradient.
#pragma once

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
using xgrad::nn::RNNImplementation;
namespace nn = xgrad::nn;

struct Config {
    std::string cell;           // a built-in cell's name, or "indrnn": the example's user cell
    Nonlinearity nonlinearity;  // RNN only
    bool bias;
    std::size_t layers;
    bool bidirectional, batch_first, variable_lengths, with_h0;
    std::string name() const {
        const std::string kind = cell != "rnn" ? cell : nonlinearity == Nonlinearity::tanh ? "rnn tanh" : "rnn relu";
        return fmt::format("{} bias={} layers={} bidirectional={} batch_first={} variable={} h0={}", kind, bias, layers,
                           bidirectional, batch_first, variable_lengths, with_h0);
    }
};

constexpr std::size_t T_ = 5, B = 3, I = 4, H = 6;

template <class T>
std::unique_ptr<RecurrentBase<T>> make_layer(const Config& c, xgrad::Generator& gen) {
    auto options = nn::RecurrentOptions(I, H).num_layers(c.layers).bias(c.bias).bidirectional(c.bidirectional).batch_first(c.batch_first);
    if (c.cell == "indrnn") return std::make_unique<nn::Recurrent<IndRNNCell, T>>(options, gen);
    return nn::make_recurrent<T>(c.cell, options.nonlinearity(c.nonlinearity), gen);
}

// Every combination of bias, 1/2 layers, bidirectional, batch_first, equal/variable lengths and
// h0 given/absent (and, for the RNN, tanh/relu).
inline std::vector<Config> full_grid(const std::string& cell) {
    std::vector<Config> configs;
    for (Nonlinearity f : {Nonlinearity::tanh, Nonlinearity::relu}) {
        if (cell != "rnn" && f == Nonlinearity::relu) continue;
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
    Tensor<T> output, h_n, c_n, d_input, d_h0, d_c0;
    std::vector<Tensor<T>> d_params;
};

template <class T>
void check_agreement(const Config& c, double tol) {
    xgrad::Generator gen(17);
    auto layer = make_layer<T>(c, gen);
    const bool lstm = layer->cell().states() == 2;
    const std::size_t D = c.bidirectional ? 2 : 1;
    const xgrad::Shape in_shape = c.batch_first ? xgrad::Shape{B, T_, I} : xgrad::Shape{T_, B, I};
    const xgrad::Shape out_shape = c.batch_first ? xgrad::Shape{B, T_, D * H} : xgrad::Shape{T_, B, D * H};
    const xgrad::Shape state = {c.layers * D, B, H};
    const Tensor<T> input = xgrad::uniform<T>(in_shape, -1, 1, gen), h0 = xgrad::uniform<T>(state, -1, 1, gen);
    const Tensor<T> c0 = xgrad::uniform<T>(state, -1, 1, gen), w_out = xgrad::uniform<T>(out_shape, -1, 1, gen);
    const Tensor<T> w_h = xgrad::uniform<T>(state, -1, 1, gen), w_c = xgrad::uniform<T>(state, -1, 1, gen);
    const std::vector<std::int64_t> lengths = c.variable_lengths ? std::vector<std::int64_t>{5, 1, 3} : std::vector<std::int64_t>{};
    Run<T> runs[2];
    for (int i = 0; i < 2; ++i) {
        layer->settings().implementation = i == 0 ? RNNImplementation::graph : RNNImplementation::fused;
        layer->zero_grad();
        Graph<T> g;
        Var<T> x = g.variable(input), h = c.with_h0 ? g.variable(h0) : Var<T>();
        Var<T> cell = c.with_h0 && lstm ? g.variable(c0) : Var<T>();
        auto r = layer->forward_any(x, h, cell, lengths);
        auto loss = xgrad::sum(r.output * g.constant(w_out)) + xgrad::sum(r.h_n * g.constant(w_h));
        if (lstm) loss = loss + xgrad::sum(r.c_n * g.constant(w_c));
        loss.backward();
        runs[i] = {r.output.value(), r.h_n.value(), lstm ? r.c_n.value() : Tensor<T>(), x.grad(),
                   c.with_h0 ? h.grad() : Tensor<T>(), cell.defined() ? cell.grad() : Tensor<T>(), {}};
        for (const auto& p : layer->parameters()) runs[i].d_params.push_back(p.grad());
    }
    auto close = [tol](const Tensor<T>& a, const Tensor<T>& b) {
        return a.shape() == b.shape() && (a.size() == 0 || xt::amax(xt::abs(a - b))() <= tol);
    };
    CHECK(close(runs[0].output, runs[1].output));
    CHECK(close(runs[0].h_n, runs[1].h_n));
    if (lstm) CHECK(close(runs[0].c_n, runs[1].c_n));
    CHECK(close(runs[0].d_input, runs[1].d_input));
    if (c.with_h0) CHECK(close(runs[0].d_h0, runs[1].d_h0));
    if (lstm && c.with_h0) CHECK(close(runs[0].d_c0, runs[1].d_c0));
    REQUIRE(runs[0].d_params.size() == runs[1].d_params.size());
    const auto names = layer->named_parameters();
    for (std::size_t i = 0; i < runs[0].d_params.size(); ++i) {
        CAPTURE(names[i].first);
        CHECK(close(runs[0].d_params[i], runs[1].d_params[i]));
        CHECK(xt::amax(xt::abs(runs[0].d_params[i]))() > 0);  // a vacuous comparison would hide a missing gradient
    }
}

}  // namespace grid
