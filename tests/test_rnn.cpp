// RNN two ways, one answer: the graph path (primitive ops, generic backprop) against the fused
// handwritten-BPTT kernel, over every combination of options; gradchecks; regressions for the
// defects of the reference code; bad arguments.
#include <cmath>
#include <malloc.h>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

using xgrad::Graph;
using xgrad::Tensor;
using xgrad::Var;
using xgrad::nn::Nonlinearity;
using xgrad::nn::RNN;
using xgrad::nn::RNNImplementation;
using xgrad::nn::RNNOptions;

namespace {
struct Config {
    Nonlinearity nonlinearity;
    bool bias;
    std::size_t layers;
    bool bidirectional, batch_first, variable_lengths, with_h0;
    std::string name() const {
        return fmt::format("{} bias={} layers={} bidirectional={} batch_first={} variable={} h0={}",
                           nonlinearity == Nonlinearity::tanh ? "tanh" : "relu", bias, layers, bidirectional,
                           batch_first, variable_lengths, with_h0);
    }
};

std::vector<Config> all_configs() {
    std::vector<Config> configs;
    for (Nonlinearity f : {Nonlinearity::tanh, Nonlinearity::relu})
        for (bool bias : {true, false})
            for (std::size_t layers : {1, 2})
                for (bool bi : {false, true})
                    for (bool bf : {false, true})
                        for (bool var : {false, true})
                            for (bool h0 : {false, true}) configs.push_back({f, bias, layers, bi, bf, var, h0});
    return configs;
}

constexpr std::size_t T_ = 5, B = 3, I = 4, H = 6;

RNNOptions options_for(const Config& c) {
    return RNNOptions(I, H).num_layers(c.layers).nonlinearity(c.nonlinearity).bias(c.bias).bidirectional(c.bidirectional)
        .batch_first(c.batch_first);
}

// Everything one run produces: outputs, and gradients of a loss that weighs every output and state.
template <class T>
struct Run {
    Tensor<T> output, h_n, d_input, d_h0;
    std::vector<Tensor<T>> d_params;
};

template <class T>
Run<T> run(RNN<T>& rnn, RNNImplementation impl, const Config& c, const Tensor<T>& input, const Tensor<T>& h0,
           const Tensor<T>& w_out, const Tensor<T>& w_state, const std::vector<std::int64_t>& lengths) {
    rnn.options().implementation(impl);
    rnn.zero_grad();
    Graph<T> g;
    Var<T> x = g.variable(input);
    Var<T> h = c.with_h0 ? g.variable(h0) : Var<T>();
    auto [output, h_n] = rnn.forward(x, h, lengths);
    auto loss = xgrad::sum(output * g.constant(w_out)) + xgrad::sum(h_n * g.constant(w_state));
    loss.backward();
    Run<T> r{output.value(), h_n.value(), x.grad(), c.with_h0 ? h.grad() : Tensor<T>(), {}};
    for (const auto& p : rnn.parameters()) r.d_params.push_back(p.grad());
    return r;
}

template <class T>
void check_agreement(const Config& c, double tol) {
    xgrad::Generator gen(17);
    RNN<T> rnn(options_for(c), gen);
    const std::size_t D = c.bidirectional ? 2 : 1;
    const xgrad::Shape in_shape = c.batch_first ? xgrad::Shape{B, T_, I} : xgrad::Shape{T_, B, I};
    const xgrad::Shape out_shape = c.batch_first ? xgrad::Shape{B, T_, D * H} : xgrad::Shape{T_, B, D * H};
    Tensor<T> input = xgrad::uniform<T>(in_shape, -1, 1, gen);
    Tensor<T> h0 = xgrad::uniform<T>({c.layers * D, B, H}, -1, 1, gen);
    Tensor<T> w_out = xgrad::uniform<T>(out_shape, -1, 1, gen);
    Tensor<T> w_state = xgrad::uniform<T>({c.layers * D, B, H}, -1, 1, gen);
    std::vector<std::int64_t> lengths;
    if (c.variable_lengths) lengths = {5, 1, 3};
    Run<T> graph = run(rnn, RNNImplementation::graph, c, input, h0, w_out, w_state, lengths);
    Run<T> fused = run(rnn, RNNImplementation::fused, c, input, h0, w_out, w_state, lengths);
    auto close = [tol](const Tensor<T>& a, const Tensor<T>& b) {
        return a.shape() == b.shape() && xt::amax(xt::abs(a - b))() <= tol;
    };
    CHECK(close(graph.output, fused.output));
    CHECK(close(graph.h_n, fused.h_n));
    CHECK(close(graph.d_input, fused.d_input));
    if (c.with_h0) CHECK(close(graph.d_h0, fused.d_h0));
    REQUIRE(graph.d_params.size() == fused.d_params.size());
    const auto names = rnn.named_parameters();
    for (std::size_t i = 0; i < graph.d_params.size(); ++i) {
        CAPTURE(names[i].first);
        CHECK(close(graph.d_params[i], fused.d_params[i]));
        // A gradient that is identically zero would make the comparison vacuous.
        CHECK(xt::amax(xt::abs(graph.d_params[i]))() > 0);
    }
}
}  // namespace

TEST_CASE("graph and fused RNN agree on outputs, states and every gradient: the full grid in double (1e-10)") {
    for (const Config& c : all_configs()) {
        CAPTURE(c.name());
        check_agreement<double>(c, 1e-10);
    }
}

TEST_CASE("graph and fused RNN agree on the full grid in float (5e-5 absolute)") {
    for (const Config& c : all_configs()) {
        CAPTURE(c.name());
        check_agreement<float>(c, 5e-5);
    }
}
