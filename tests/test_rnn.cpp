// The Elman RNN and the raw kernel: PyTorch's own numbers, the relu and batch_first gradcheck,
// regressions for the defects of the reference code, the raw API's checks, bad arguments. What
// every built-in cell shares (the graph-vs-fused grid, gradcheck) is in test_builtin_cells.cpp.
#include <cmath>
#include <malloc.h>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include <xgrad/xgrad.hpp>

#include "pytorch_fixtures.hpp"
#include "recurrent_grid.hpp"

using xgrad::Graph;
using xgrad::Tensor;
using xgrad::Var;
using xgrad::nn::Nonlinearity;
using xgrad::nn::RNN;
using xgrad::nn::RecurrentImplementation;
using xgrad::nn::RNNOptions;


TEST_CASE("a state dict exported from PyTorch's nn.RNN loads and gives PyTorch's outputs and gradients") {
    const auto a = RNNOptions(3, 4).num_layers(2).bidirectional(true);
    const auto b = RNNOptions(3, 5).nonlinearity(Nonlinearity::relu).bias(false).batch_first(true);
    RNN<double> da(a), db(b);
    RNN<float> fa(a), fb(b);
    check_against_pytorch(da, "pytorch_rnn_tanh_2layer_bidir", 1e-10);
    check_against_pytorch(db, "pytorch_rnn_relu_nobias_batchfirst", 1e-10);
    check_against_pytorch(fa, "pytorch_rnn_tanh_2layer_bidir", 5e-5);
    check_against_pytorch(fb, "pytorch_rnn_relu_nobias_batchfirst", 5e-5);
}

TEST_CASE("the RNN passes gradcheck in double, both implementations, with respect to input, h0 and every weight") {
    for (RecurrentImplementation impl : {RecurrentImplementation::graph, RecurrentImplementation::fused}) {
        for (bool relu : {false, true}) {
            xgrad::Generator gen(3);
            RNN<double> rnn(RNNOptions(3, 4).num_layers(2).bidirectional(true).batch_first(relu)
                                .nonlinearity(relu ? Nonlinearity::relu : Nonlinearity::tanh).implementation(impl), gen);
            const std::vector<std::int64_t> lengths = {4, 2};
            Tensor<double> x = xgrad::uniform<double>(relu ? xgrad::Shape{2, 4, 3} : xgrad::Shape{4, 2, 3}, -1, 1, gen);
            Tensor<double> h0 = xgrad::uniform<double>({4, 2, 4}, -1, 1, gen);
            auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) {
                auto [output, h_n] = rnn.forward(v[0], v[1], lengths);
                return xgrad::concat(std::vector{xgrad::reshape(output, {-1}), xgrad::reshape(h_n, {-1})}, 0);
            }, {x, h0}, rnn.parameters());
            INFO(report.summary());
            CHECK(report.passed);
        }
    }
}

namespace {
using xgrad::nn::RecurrentSpec;
const auto elman = xgrad::nn::make_cell<double>("rnn");  // the kernel's cell in these tests

// The kernel alone, with no graph: a loss L = Σ output ⊙ w_out + Σ h_n ⊙ w_state and its gradients.
struct KernelProblem {
    RecurrentSpec spec;
    std::vector<Tensor<double>> weights;  // per (layer, direction): w_ih, w_hh, b_ih, b_hh
    Tensor<double> input, h0, w_out, w_state;

    explicit KernelProblem(RecurrentSpec s, double input_scale = 1.0) : spec(s) {
        xgrad::Generator gen(11);
        for (std::size_t l = 0; l < s.num_layers; ++l) {
            for (std::size_t d = 0; d < s.directions(); ++d) {
                weights.push_back(xgrad::uniform<double>({s.hidden_size, s.layer_input_size(l)}, -0.5, 0.5, gen));
                weights.push_back(xgrad::uniform<double>({s.hidden_size, s.hidden_size}, -0.5, 0.5, gen));
                weights.push_back(xgrad::uniform<double>({s.hidden_size}, -0.5, 0.5, gen));
                weights.push_back(xgrad::uniform<double>({s.hidden_size}, -0.5, 0.5, gen));
            }
        }
        input = xgrad::uniform<double>({4, 2, s.input_size}, -input_scale, input_scale, gen);
        h0 = xgrad::uniform<double>({s.num_layers * s.directions(), 2, s.hidden_size}, -0.9, 0.9, gen);
        w_out = xgrad::uniform<double>({4, 2, s.directions() * s.hidden_size}, -1, 1, gen);
        w_state = xgrad::uniform<double>(xgrad::shape_of(h0), -1, 1, gen);
    }
    xgrad::nn::RecurrentWeights<double> pointers() const {
        xgrad::nn::RecurrentWeights<double> w;
        for (std::size_t k = 0; k < weights.size(); k += 4) {  // registered as weight_ih, weight_hh, bias_ih, bias_hh
            w.push_back({weights[k].data(), weights[k + 2].data(), {weights[k + 1].data(), weights[k + 3].data()}});
        }
        return w;
    }
    double loss() const {
        xgrad::nn::RecurrentCache<double> cache;
        auto r = xgrad::nn::recurrent_forward(*elman, spec, pointers(), input, {&h0}, {}, {}, cache);
        return xt::sum(r.output * w_out)() + xt::sum(r.final_states[0] * w_state)();
    }
    xgrad::nn::RecurrentGrads<double> grads() const {
        xgrad::nn::RecurrentCache<double> cache;
        xgrad::nn::recurrent_forward(*elman, spec, pointers(), input, {&h0}, {}, {}, cache);
        return xgrad::nn::recurrent_backward(*elman, spec, pointers(), cache, w_out.data(), {w_state.data()});
    }
    // Central difference of the loss along one entry of `target` (a member of this problem).
    Tensor<double> numeric(Tensor<double>& target) {
        Tensor<double> out = Tensor<double>::from_shape(target.shape());
        for (std::size_t e = 0; e < target.size(); ++e) {
            const double original = target.data()[e];
            target.data()[e] = original + 1e-6;
            const double plus = loss();
            target.data()[e] = original - 1e-6;
            const double minus = loss();
            target.data()[e] = original;
            out.data()[e] = (plus - minus) / 2e-6;
        }
        return out;
    }
};

bool matches(const Tensor<double>& analytic, const Tensor<double>& numeric) {
    return analytic.shape() == numeric.shape() && xt::all(xt::abs(analytic - numeric) <= 1e-5 + 1e-3 * xt::abs(numeric));
}
}  // namespace

TEST_CASE("regression: a 2-layer kernel feeds each lower layer its own gradient, not the top layer's") {
    RecurrentSpec s;
    s.input_size = 3;
    s.hidden_size = 5;  // layer 1's input (5) differs from layer 0's (3): a mix-up cannot even type-check
    s.num_layers = 2;
    KernelProblem p(s);
    auto g = p.grads();
    CHECK(matches(g.params[0].weight_ih, p.numeric(p.weights[0])));
    CHECK(matches(g.params[0].cell[0], p.numeric(p.weights[1])));
    CHECK(matches(g.params[0].bias_ih, p.numeric(p.weights[2])));
    CHECK(matches(g.input, p.numeric(p.input)));
}

TEST_CASE("regression: a non-zero h0 takes part in backward (dh0 and dW_hh at the first step)") {
    RecurrentSpec s;
    s.input_size = 3;
    s.hidden_size = 4;
    s.bidirectional = true;
    KernelProblem p(s);
    auto g = p.grads();
    CHECK(xt::amax(xt::abs(g.initial_states[0]))() > 1e-3);
    CHECK(matches(g.initial_states[0], p.numeric(p.h0)));
    CHECK(matches(g.params[0].cell[0], p.numeric(p.weights[1])));
    CHECK(matches(g.params[1].cell[0], p.numeric(p.weights[5])));
}

TEST_CASE("regression: batch_first is honoured in backward, in both implementations") {
    for (RecurrentImplementation impl : {RecurrentImplementation::graph, RecurrentImplementation::fused}) {
        xgrad::Generator gen(8);
        RNN<double> rnn(RNNOptions(3, 4).batch_first(true).implementation(impl), gen);
        Tensor<double> x = xgrad::uniform<double>({2, 5, 3}, -1, 1, gen);  // (B, T, I) with B != T
        auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) {
            return rnn.forward(v[0]).output;
        }, {x}, rnn.parameters());
        INFO(report.summary());
        CHECK(report.passed);
    }
}

TEST_CASE("regression: backward leaves the caller's upstream gradients untouched") {
    RecurrentSpec s;
    s.input_size = 3;
    s.hidden_size = 4;
    s.num_layers = 2;
    KernelProblem p(s);
    const Tensor<double> w_out = p.w_out, w_state = p.w_state;
    p.grads();
    CHECK(p.w_out == w_out);
    CHECK(p.w_state == w_state);
}

TEST_CASE("regression: tanh of large negative inputs is -1, not NaN, with finite gradients") {
    RecurrentSpec s;
    s.input_size = 3;
    s.hidden_size = 4;
    KernelProblem p(s, 1000.0);  // pre-activations of magnitude ~ 1000
    xgrad::nn::RecurrentCache<double> cache;
    auto r = xgrad::nn::recurrent_forward(*elman, s, p.pointers(), p.input, {&p.h0}, {}, {}, cache);
    CHECK(xt::all(xt::isfinite(r.output)));
    CHECK(xt::all(xt::equal(xt::abs(r.output), 1.0) || xt::abs(r.output) < 1.0));
    CHECK(xt::amin(r.output)() == -1.0);
    auto g = p.grads();
    CHECK(xt::all(xt::isfinite(g.input)));
    CHECK(xt::all(xt::isfinite(g.params[0].cell[0])));
}

TEST_CASE("the raw kernel API validates weight lists, spec and cache before BLAS reads anything") {
    RecurrentSpec s;
    s.input_size = 3;
    s.hidden_size = 4;
    s.num_layers = 2;
    KernelProblem p(s);
    xgrad::nn::RecurrentCache<double> cache;
    auto forward = [&](const xgrad::nn::RecurrentWeights<double>& w, const RecurrentSpec& spec) {
        return xgrad::nn::recurrent_forward(*elman, spec, w, p.input, {&p.h0}, {}, {}, cache);
    };
    auto with = [&](auto edit) {
        auto w = p.pointers();
        edit(w);
        return w;
    };
    using E = std::invalid_argument;
    CHECK_THROWS_WITH_AS(forward({}, s), "recurrent_forward: weights for 0 (layer, direction) pairs given, expected 2 (num_layers * directions)", E);
    CHECK_THROWS_WITH_AS(forward(with([](auto& w) { w.pop_back(); }), s), doctest::Contains("weights for 1 (layer, direction) pairs given"), E);
    CHECK_THROWS_WITH_AS(forward(with([](auto& w) { w[1].cell.pop_back(); }), s),
                         doctest::Contains("1 pointers given for the RNN cell's parameters of layer 1, expected 2"), E);
    CHECK_THROWS_WITH_AS(forward(with([](auto& w) { w[0].cell[0] = nullptr; }), s), "recurrent_forward: weight_hh[0] is null", E);
    CHECK_THROWS_WITH_AS(forward(with([](auto& w) { w[1].bias_ih = nullptr; }), s), "recurrent_forward: bias_ih[1] is null", E);
    CHECK_THROWS_WITH_AS(forward(with([](auto& w) { w[1].weight_ih = nullptr; }), s), "recurrent_forward: weight_ih[1] is null", E);
    RecurrentSpec no_bias = s;
    no_bias.bias = false;
    CHECK_THROWS_WITH_AS(forward(p.pointers(), no_bias), "recurrent_forward: bias_ih[0] is given, but there are no biases", E);
    RecurrentSpec empty = s;
    empty.hidden_size = 0;
    CHECK_THROWS_WITH_AS(forward(p.pointers(), empty), doctest::Contains("must all be positive"), E);

    // A cache from another spec (input_size, layers, cell) is refused by backward.
    forward(p.pointers(), s);
    auto backward = [&](const RecurrentSpec& spec, const xgrad::nn::RecurrentCache<double>& c) {
        return xgrad::nn::recurrent_backward(*elman, spec, p.pointers(), c, p.w_out.data(), {p.w_state.data()});
    };
    CHECK_NOTHROW(backward(s, cache));
    RecurrentSpec wider = s;
    wider.input_size = 5;
    CHECK_THROWS_WITH_AS(backward(wider, cache), doctest::Contains("layer 0 input of shape (4, 2, 3), expected (4, 2, 5)"), E);
    const auto lstm = xgrad::nn::make_cell<double>("lstm");
    CHECK_THROWS_WITH_AS(xgrad::nn::recurrent_backward(*lstm, s, p.pointers(), cache, p.w_out.data(), {p.w_state.data()}),
                         doctest::Contains("the cache does not come from recurrent_forward with this spec (2 states buffers, expected 4)"), E);
    auto damaged = cache;
    damaged.lengths.pop_back();
    CHECK_THROWS_WITH_AS(backward(s, damaged), doctest::Contains("1 lengths for a batch of 2"), E);
    damaged = cache;
    damaged.states[1] = Tensor<double>::from_shape({2, 2, 4});
    CHECK_THROWS_WITH_AS(backward(s, damaged), doctest::Contains("states of shape (2, 2, 4), expected (5, 2, 4)"), E);
    CHECK_THROWS_AS(backward(s, xgrad::nn::RecurrentCache<double>{}), E);
}

TEST_CASE("variable lengths: outputs are zero past each end and h_n is the state at each sequence's own last step") {
    for (RecurrentImplementation impl : {RecurrentImplementation::graph, RecurrentImplementation::fused}) {
        xgrad::Generator gen(4);
        RNN<double> rnn(RNNOptions(3, 4).bidirectional(true).implementation(impl), gen);
        Tensor<double> x = xgrad::uniform<double>({5, 2, 3}, -1, 1, gen);
        Graph<double> g;
        auto [output, h_n] = rnn.forward(g.constant(x), {}, {5, 2});
        // Sequence 1 alone, cut to its 2 steps, must give the same numbers.
        Tensor<double> x1 = xt::view(x, xt::range(0, 2), xt::range(1, 2), xt::all());
        auto [out1, h1] = rnn.forward(g.constant(x1));
        CHECK(xt::allclose(xt::view(output.value(), xt::range(0, 2), 1, xt::all()), xt::view(out1.value(), xt::all(), 0, xt::all()), 1e-12, 1e-12));
        CHECK(xt::all(xt::equal(xt::view(output.value(), xt::range(2, 5), 1, xt::all()), 0.0)));
        CHECK(xt::allclose(xt::view(h_n.value(), xt::all(), 1, xt::all()), xt::view(h1.value(), xt::all(), 0, xt::all()), 1e-12, 1e-12));
    }
}

TEST_CASE("inter-layer dropout: both implementations apply the same masks and agree") {
    std::vector<Tensor<double>> grads[2];
    Tensor<double> outputs[2];
    for (int i = 0; i < 2; ++i) {
        xgrad::Generator gen(21);  // same weights and the same dropout generator in both models
        RNN<double> rnn(RNNOptions(3, 4).num_layers(3).dropout(0.5)
                            .implementation(i == 0 ? RecurrentImplementation::graph : RecurrentImplementation::fused), gen);
        Graph<double> g;
        auto x = g.constant(xgrad::uniform<double>({6, 2, 3}, -1, 1, gen));
        auto [output, h_n] = rnn.forward(x);
        xgrad::sum(output).backward();
        outputs[i] = output.value();
        for (const auto& p : rnn.parameters()) grads[i].push_back(p.grad());
    }
    CHECK(xt::allclose(outputs[0], outputs[1], 1e-12, 1e-12));
    for (std::size_t k = 0; k < grads[0].size(); ++k) CHECK(xt::allclose(grads[0][k], grads[1][k], 1e-12, 1e-12));
}

TEST_CASE("bad RNN arguments name the module, the argument and the shapes") {
    RNN<float> rnn(RNNOptions(3, 4).num_layers(2));
    Graph<float> g;
    using E = xgrad::ShapeError;
    CHECK_THROWS_WITH_AS(rnn.forward(g.constant(xt::zeros<float>({5, 3}))),
                         "RNN: input must be 3-D (seq_len, batch, input_size), got (5, 3)", E);
    CHECK_THROWS_WITH_AS(rnn.forward(g.constant(xt::zeros<float>({5, 2, 7}))),
                         "RNN: input (5, 2, 7) has 7 features, expected input_size 3", E);
    auto x = g.constant(xt::zeros<float>({5, 2, 3}));
    CHECK_THROWS_WITH_AS(rnn.forward(x, g.constant(xt::zeros<float>({1, 2, 4}))),
                         "RNN: h0 must have shape (2, 2, 4) (num_layers * directions, batch, hidden_size), got (1, 2, 4)", E);
    CHECK_THROWS_WITH_AS(rnn.forward(x, {}, {5}), "RNN: lengths has 1 entries for a batch of 2 (input (5, 2, 3))",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(rnn.forward(x, {}, {5, 6}), "RNN: lengths[1] = 6 is out of range [0, 5] for input (5, 2, 3)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(rnn.forward(x, {}, {-1, 2}), doctest::Contains("lengths[0] = -1 is out of range"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(RNN<float>(RNNOptions(3, 4).dropout(1.0)), "RNN: dropout = 1 is not in [0, 1)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(RNN<float>(RNNOptions(0, 4)), "RNN: input_size (0) and hidden_size (4) must be positive",
                         std::invalid_argument);
    RNN<float> batch_first(RNNOptions(3, 4).batch_first(true));
    CHECK_THROWS_WITH_AS(batch_first.forward(g.constant(xt::zeros<float>({2, 0, 3}))),
                         "RNN: input (batch, seq_len, input_size) (2, 0, 3) has no time steps or no sequences", E);
}

TEST_CASE("RNN state dicts: PyTorch's names, and strict loading that names what does not fit") {
    RNN<float> rnn(RNNOptions(3, 4).num_layers(2).bidirectional(true));
    std::vector<std::string> names;
    for (const auto& [name, p] : rnn.named_parameters()) names.push_back(name);
    CHECK(names == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                            "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                                            "bias_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1", "bias_ih_l1",
                                            "bias_hh_l1", "weight_ih_l1_reverse", "weight_hh_l1_reverse",
                                            "bias_ih_l1_reverse", "bias_hh_l1_reverse"});
    CHECK(rnn.named_parameters()[8].second.shape() == xgrad::Shape{4, 8});  // layer 1 reads both directions
    auto state = rnn.state_dict();
    auto missing = state;
    missing.erase("bias_hh_l1");
    CHECK_THROWS_WITH_AS(rnn.load_state_dict(missing), "RNN.load_state_dict: missing parameter 'bias_hh_l1' of shape (4,)",
                         std::invalid_argument);
    auto extra = state;
    extra["weight_ih_l2"] = Tensor<float>::from_shape({4, 8});
    CHECK_THROWS_WITH_AS(rnn.load_state_dict(extra), "RNN.load_state_dict: unexpected parameter 'weight_ih_l2' of shape (4, 8)",
                         std::invalid_argument);
    auto misshaped = state;
    misshaped["weight_hh_l0"] = Tensor<float>::from_shape({4, 5});
    const Tensor<float> before = rnn.named_parameters()[0].second.value();
    CHECK_THROWS_WITH_AS(rnn.load_state_dict(misshaped),
                         "RNN.load_state_dict: parameter 'weight_hh_l0' has shape (4, 5) in the state dict, expected (4, 4)",
                         xgrad::ShapeError);
    CHECK(rnn.named_parameters()[0].second.value() == before);  // nothing changed
}

TEST_CASE("RNNCell is one step of RNN") {
    xgrad::Generator gen(2);
    xgrad::nn::RNNCell<double> cell(xgrad::nn::RNNCellOptions(3, 4), gen);
    RNN<double> rnn(RNNOptions(3, 4));
    xgrad::nn::StateDict<double> state;
    for (const auto& [name, p] : cell.named_parameters()) state[name + "_l0"] = p.value();
    rnn.load_state_dict(state);
    Graph<double> g;
    Tensor<double> x = xgrad::uniform<double>({1, 2, 3}, -1, 1, gen);
    Tensor<double> h = xgrad::uniform<double>({1, 2, 4}, -1, 1, gen);
    auto step = cell.forward(xgrad::select(g.constant(x), 0, 0), xgrad::select(g.constant(h), 0, 0));
    auto [output, h_n] = rnn.forward(g.constant(x), g.constant(h));
    CHECK(xt::allclose(step.value(), xt::view(output.value(), 0), 1e-12, 1e-12));
    auto from_zero = cell.forward(xgrad::select(g.constant(x), 0, 0));
    auto [out0, h0] = rnn.forward(g.constant(x));
    CHECK(xt::allclose(from_zero.value(), xt::view(out0.value(), 0), 1e-12, 1e-12));
    CHECK_THROWS_WITH_AS(cell.forward(g.constant(x)), "RNNCell: input must be (batch, 3), got (1, 2, 3)", xgrad::ShapeError);
}

TEST_CASE("per-step gradient norms: both implementations agree, and a small W_hh makes them vanish") {
    xgrad::nn::RecurrentVerifyOptions o;
    o.steps(30);
    o.loss_at_last_step_only(true);
    o.finite_differences(false);
    o.recurrent_scale(0.5);
    auto vanishing = xgrad::nn::verify_recurrent_gradients(o);
    CHECK(vanishing.passed);
    const auto& n = vanishing.hidden_grad_norms_graph;
    CHECK(n(0, 0) < 1e-6 * n(0, 29));
    o.recurrent_scale(3.0);
    auto large = xgrad::nn::verify_recurrent_gradients(o);
    CHECK(large.passed);
    CHECK(large.hidden_grad_norms_graph(0, 0) > 1e-2 * large.hidden_grad_norms_graph(0, 29));
}

TEST_CASE("the verification report passes correct gradients and fails when its bar cannot be met") {
    xgrad::nn::RecurrentVerifyOptions o;
    o.num_layers(2);
    o.bidirectional(true);
    o.lengths({6, 2, 4});
    auto report = xgrad::nn::verify_recurrent_gradients(o);
    CHECK(report.passed);
    for (const auto& p : report.parameters) {
        CAPTURE(p.name);
        CHECK(p.fused_vs_graph.max_abs <= 1e-10);
        CHECK(p.graph_vs_numeric.max_abs <= 1e-6);
    }
    o.agreement(-1);  // an impossible bar must fail
    CHECK_FALSE(xgrad::nn::verify_recurrent_gradients(o).passed);
}
