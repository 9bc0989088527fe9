// LSTM and GRU: PyTorch's own numbers, the one-step cells, recurrent dropout and zoneout, one-hot
// input, and bad arguments. What every built-in cell shares (the graph-vs-fused grid, gradcheck,
// the verification report) is in test_builtin_cells.cpp.
#include <cmath>
#include <initializer_list>
#include <memory>
#include <utility>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include <xgrad/xgrad.hpp>

#include "recurrent_grid.hpp"

#include "pytorch_fixtures.hpp"

using xgrad::Graph;
using xgrad::Tensor;
using xgrad::Var;
using xgrad::nn::RecurrentBase;
using xgrad::nn::RecurrentImplementation;
namespace nn = xgrad::nn;

using grid::B;
using grid::H;
using grid::I;
using grid::T_;


namespace {
template <class T>
void pytorch_fixtures(double tol) {
    nn::LSTM<T> lstm(nn::LSTMOptions(3, 4).num_layers(2).bidirectional(true));
    check_against_pytorch(lstm, "pytorch_lstm_2layer_bidir", tol);
    nn::GRU<T> gru(nn::GRUOptions(3, 4).num_layers(2).bidirectional(true));
    check_against_pytorch(gru, "pytorch_gru_2layer_bidir", tol);
    nn::GRU<T> gru_bf(nn::GRUOptions(3, 5).bias(false).batch_first(true));
    check_against_pytorch(gru_bf, "pytorch_gru_nobias_batchfirst", tol);
}
}  // namespace

TEST_CASE("state dicts exported from PyTorch's nn.LSTM and nn.GRU give PyTorch's outputs and gradients") {
    pytorch_fixtures<double>(1e-10);
    pytorch_fixtures<float>(5e-5);
}

TEST_CASE("LSTMCell and GRUCell are one step of LSTM and GRU") {
    xgrad::Generator gen(2);
    nn::LSTMCell<double> lstm_cell(nn::LSTMCellOptions(3, 4), gen);
    nn::GRUCell<double> gru_cell(nn::GRUCellOptions(3, 4), gen);
    nn::LSTM<double> lstm(nn::LSTMOptions(3, 4));
    nn::GRU<double> gru(nn::GRUOptions(3, 4));
    for (auto [cell, layer] : {std::pair<xgrad::nn::Module<double>*, xgrad::nn::Module<double>*>{&lstm_cell, &lstm},
                               {&gru_cell, &gru}}) {
        xgrad::nn::StateDict<double> state;
        for (const auto& [name, p] : cell->named_parameters()) state[name + "_l0"] = p.value();
        layer->load_state_dict(state);
    }
    Graph<double> g;
    const Tensor<double> x = xgrad::uniform<double>({1, 2, 3}, -1, 1, gen), h = xgrad::uniform<double>({1, 2, 4}, -1, 1, gen);
    const Tensor<double> c = xgrad::uniform<double>({1, 2, 4}, -1, 1, gen);
    auto x0 = xgrad::select(g.constant(x), 0, 0), h0 = xgrad::select(g.constant(h), 0, 0), c0 = xgrad::select(g.constant(c), 0, 0);
    auto [h1, c1] = lstm_cell.forward(x0, h0, c0);
    auto full = lstm.forward(g.constant(x), g.constant(h), g.constant(c));
    CHECK(xt::allclose(h1.value(), xt::view(full.output.value(), 0), 1e-12, 1e-12));
    CHECK(xt::allclose(c1.value(), xt::view(full.c_n.value(), 0), 1e-12, 1e-12));
    auto g1 = gru_cell.forward(x0, h0);
    auto gfull = gru.forward(g.constant(x), g.constant(h));
    CHECK(xt::allclose(g1.value(), xt::view(gfull.output.value(), 0), 1e-12, 1e-12));
    auto from_zero = gru_cell.forward(x0);
    CHECK(xt::allclose(from_zero.value(), xt::view(gru.forward(g.constant(x)).output.value(), 0), 1e-12, 1e-12));
    CHECK_THROWS_WITH_AS(lstm_cell.forward(x0, h0), "LSTMCell: hx and cx go together: give both or neither (got hx only)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(gru_cell.forward(x0, g.constant(xt::zeros<double>({2, 5}))), "GRUCell: hx must be (2, 4), got (2, 5)",
                         xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(gru_cell.forward(g.constant(x)), "GRUCell: input must be (batch, 3), got (1, 2, 3)", xgrad::ShapeError);
}

namespace {
// The module's forward with its dropout generator reset first: the same masks on every call.
template <class T>
Var<T> fixed_masks(RecurrentBase<T>& layer, const std::string& state, const Var<T>& x) {
    layer.dropout_generator().set_state(state);
    return layer.forward_states(x).output;
}
}  // namespace

TEST_CASE("recurrent dropout and zoneout pass gradcheck with a fixed mask, for every cell") {
    for (const std::string& cell : nn::recurrent_cell_names()) {
        for (int kind = 0; kind < 4; ++kind) {
            CAPTURE(cell);
            CAPTURE(kind);
            xgrad::Generator gen(5);
            auto setup = [&](auto options) {
                options.num_layers(2).implementation(RecurrentImplementation::fused);  // falls back to graph: checked below
                if (kind == 0) options.dropout_input(0.3);
                if (kind == 1) options.dropout_output(0.3);
                if (kind == 2) options.dropout_recurrent(0.3);
                if (kind == 3) options.zoneout(0.3);
                return options;
            };
            auto layer = nn::make_recurrent<double>(cell, setup(nn::RecurrentOptions(3, 4)), gen);
            const std::string state = layer->dropout_generator().state();
            const Tensor<double> x = xgrad::uniform<double>({5, 2, 3}, -1, 1, gen);
            auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) { return fixed_masks(*layer, state, v[0]); },
                                           {x}, layer->parameters());
            INFO(report.summary());
            CHECK(report.passed);
            // The masks are really applied: training output differs from evaluation output.
            Graph<double> g;
            const Tensor<double> train_out = fixed_masks(*layer, state, g.constant(x)).value();
            layer->eval();
            const Tensor<double> eval_out = fixed_masks(*layer, state, g.constant(x)).value();
            layer->train();
            CHECK(xt::amax(xt::abs(train_out - eval_out))() > 1e-6);
        }
    }
}

TEST_CASE("variational dropout reuses one mask per sequence at every step") {
    xgrad::Generator gen(8);
    nn::GRU<double> gru(nn::GRUOptions(6, 4).dropout_input(0.5), gen);
    Graph<double> g;
    auto x = g.variable(xgrad::uniform<double>({7, 3, 6}, -1, 1, gen));
    xgrad::sum(gru.forward(x).output).backward();
    // An input feature dropped for a sequence gets no gradient at any step; a kept one gets some at every step.
    std::size_t dropped = 0, kept = 0;
    for (std::size_t b = 0; b < 3; ++b) {
        for (std::size_t i = 0; i < 6; ++i) {
            std::size_t zero_steps = 0;
            for (std::size_t t = 0; t < 7; ++t) zero_steps += x.grad()(t, b, i) == 0.0;
            CHECK((zero_steps == 0 || zero_steps == 7));
            (zero_steps == 7 ? dropped : kept) += 1;
        }
    }
    CHECK(dropped > 0);
    CHECK(kept > 0);
}

TEST_CASE("zoneout: units keep their previous state in training, and the expectation holds in evaluation") {
    xgrad::Generator gen(9);
    nn::LSTM<double> plain(nn::LSTMOptions(3, 8), gen);
    nn::LSTM<double> zoned(nn::LSTMOptions(3, 8).zoneout(0.5));
    zoned.load_state_dict(plain.state_dict());
    Graph<double> g;
    auto x = g.constant(xgrad::uniform<double>({1, 4, 3}, -1, 1, gen));
    auto h0 = g.constant(xgrad::uniform<double>({1, 4, 8}, -1, 1, gen)), c0 = g.constant(xgrad::uniform<double>({1, 4, 8}, -1, 1, gen));
    const Tensor<double> fresh = plain.forward(x, h0, c0).h_n.value(), previous = h0.value();
    const Tensor<double> trained = zoned.forward(x, h0, c0).h_n.value();
    std::size_t from_previous = 0;
    for (std::size_t i = 0; i < trained.size(); ++i) {
        const bool old = trained.data()[i] == previous.data()[i], now = trained.data()[i] == fresh.data()[i];
        CHECK((old || now));
        from_previous += old;
    }
    CHECK(from_previous > 4);
    CHECK(from_previous < 28);
    zoned.eval();
    CHECK(xt::allclose(zoned.forward(x, h0, c0).h_n.value(), 0.5 * fresh + 0.5 * previous, 1e-12, 1e-12));
}

TEST_CASE("bad LSTM and GRU arguments name the module, the argument and the shapes or values") {
    nn::LSTM<float> lstm(nn::LSTMOptions(3, 4));
    Graph<float> g;
    auto x = g.constant(xt::zeros<float>({5, 2, 3}));
    auto state = g.constant(xt::zeros<float>({1, 2, 4}));
    CHECK_THROWS_WITH_AS(lstm.forward(x, state), "LSTM: h0 and c0 go together: give both or neither (got h0 only)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(lstm.forward(x, state, g.constant(xt::zeros<float>({1, 3, 4}))),
                         "LSTM: c0 must have shape (1, 2, 4) (num_layers * directions, batch, hidden_size), got (1, 3, 4)",
                         xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(lstm.forward(g.constant(xt::zeros<float>({5, 2, 7}))),
                         "LSTM: input (5, 2, 7) has 7 features, expected input_size 3", xgrad::ShapeError);
    nn::GRU<float> gru(nn::GRUOptions(3, 4));
    CHECK_THROWS_WITH_AS(gru.forward(x, g.constant(xt::zeros<float>({2, 2, 4}))),
                         doctest::Contains("GRU: h0 must have shape (1, 2, 4)"), xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(gru.forward_states(x, {state, state}), "GRU: 2 initial states given, the cell has 1", std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::GRU<float>(nn::GRUOptions(3, 4).zoneout(1.0)), "GRU: zoneout = 1 is not in [0, 1)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::LSTM<float>(nn::LSTMOptions(3, 4).dropout_recurrent(-0.1)),
                         "LSTM: dropout_recurrent = -0.1 is not in [0, 1)", std::invalid_argument);
    lstm.settings().dropout_input(1.5);
    CHECK_THROWS_WITH_AS(lstm.forward(x), "LSTM: dropout_input = 1.5 is not in [0, 1)", std::invalid_argument);
}

TEST_CASE("vanishing gradients: over 40 steps an LSTM with a forget bias keeps them, an RNN loses them") {
    nn::RecurrentVerifyOptions o;
    o.steps(40);
    o.loss_at_last_step_only(true);
    o.finite_differences(false);
    auto rnn = nn::verify_recurrent_gradients(o);
    o.cell("lstm");
    o.forget_bias(3.0);
    auto lstm = nn::verify_recurrent_gradients(o);
    CHECK(rnn.passed);
    CHECK(lstm.passed);
    const auto& r = rnn.hidden_grad_norms_graph;
    const auto& l = lstm.hidden_grad_norms_graph;
    CHECK(r(0, 0) < 1e-6 * r(0, 39));
    CHECK(l(0, 0) > 1e-2 * l(0, 39));
}

TEST_CASE("one-hot input given as indices equals the dense one-hot input, in values and gradients, both paths") {
    for (const char* cell : {"rnn", "lstm", "gru", "indrnn", "leaky3"}) {
        for (RecurrentImplementation impl : {RecurrentImplementation::graph, RecurrentImplementation::fused}) {
            // A vocabulary of 40 > T_ * B characters: the fused kernel reads W_ih's columns in place. A
            // batch of 64 x 64 units: the graph path gathers each step's rows as it runs.
            struct Case {
                bool batch_first;
                std::size_t vocab, batch, hidden;
            };
            for (auto [batch_first, vocab, batch, hidden] : {Case{false, I, B, H}, Case{true, I, B, H}, Case{false, 40, B, H},
                                                             Case{true, 40, B, H}, Case{false, I, 64, 64}}) {
                CAPTURE(cell);
                CAPTURE(batch_first);
                CAPTURE(vocab);
                CAPTURE(batch);
                xgrad::Generator gen(12);
                grid::Config c{cell, nn::Nonlinearity::tanh, true, 2, true, batch_first, true, false};
                c.input = vocab;
                c.batch = batch;
                c.hidden = hidden;
                auto layer = grid::make_layer<double>(c, gen);
                layer->settings().implementation(impl);
                xgrad::Indices ids = xgrad::Indices::from_shape(batch_first ? xgrad::Shape{batch, T_} : xgrad::Shape{T_, batch});
                for (auto& v : ids) v = static_cast<std::int64_t>(gen.below(vocab));
                Tensor<double> one_hot = Tensor<double>::from_shape({ids.shape(0), ids.shape(1), vocab});
                one_hot.fill(0.0);
                for (std::size_t i = 0; i < ids.size(); ++i) one_hot.data()[i * vocab + static_cast<std::size_t>(ids.data()[i])] = 1.0;
                std::vector<std::int64_t> lengths;
                for (std::size_t b = 0; b < batch; ++b) lengths.push_back(static_cast<std::int64_t>(1 + (3 * b + 4) % T_));
                std::vector<Tensor<double>> outputs, grads;
                for (bool indices : {false, true}) {
                    layer->zero_grad();
                    Graph<double> g;
                    auto r = indices ? layer->forward_indices(g, ids, {}, lengths) : layer->forward_states(g.constant(one_hot), {}, lengths);
                    xgrad::sum(r.output * r.output).backward();
                    outputs.push_back(r.output.value());
                    for (const auto& p : layer->parameters()) grads.push_back(p.grad());
                }
                CHECK(xt::allclose(outputs[0], outputs[1], 1e-12, 1e-12));
                const std::size_t n = grads.size() / 2;
                for (std::size_t i = 0; i < n; ++i) {
                    CAPTURE(layer->named_parameters()[i].first);
                    CAPTURE(xt::amax(xt::abs(grads[i] - grads[n + i]))());
                    CHECK(xt::allclose(grads[i], grads[n + i], 1e-12, 1e-12));
                }
            }
        }
    }
    nn::GRU<float> gru(nn::GRUOptions(3, 4));
    Graph<float> g;
    CHECK_THROWS_WITH_AS(gru.forward_indices(g, xgrad::Indices{{0, 3}}), "GRU: index 3 at position 1 is out of range for input_size 3",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(gru.forward_indices(g, xgrad::Indices{0, 1}), "GRU: index input must be 2-D (seq_len, batch), got (2,)",
                         xgrad::ShapeError);
}
