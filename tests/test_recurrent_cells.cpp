// Cells as types: a user's cell (the example's IndRNN) through the same graph-versus-fused grid
// as the built-in cells, the library's cross-check of a handwritten backward (and that it catches
// a wrong one), a cell with only a graph step, and the cell registry.
#include <doctest/doctest.h>

#include "recurrent_grid.hpp"

namespace nn = xgrad::nn;
using xgrad::Tensor;
using xgrad::Var;

namespace {
// IndRNN with a wrong handwritten backward: its δu misses the recurrent state's factor.
struct BrokenIndRNNCell : IndRNNCell {
    template <class T>
    void backward_row(const nn::RowBackward<T>& r) const {
        IndRNNCell::backward_row(r);
        for (std::size_t j = 0; j < r.hidden; ++j) r.d_params[0][j] *= T(1.5);
    }
};

// The minimal gated unit (Zhou et al. 2016) with a graph step only:
//   f = σ(x_f + U_f h + b_f),  h̃ = tanh(x_h + U_h (f ⊙ h) + b_h),  h' = (1 - f) ⊙ h + f ⊙ h̃.
struct MinimalGatedUnit {
    static constexpr std::string_view name = "MGU";
    static constexpr std::size_t gates = 2, states = 1;
    std::vector<nn::CellParameter> parameters(std::size_t hidden) const {
        return {{"weight_hf", {hidden, hidden}}, {"weight_hh", {hidden, hidden}}, {"bias_hf", {hidden}, true}, {"bias_hh", {hidden}, true}};
    }
    template <class T>
    std::vector<Var<T>> step(const nn::CellStep<T>& in) const {
        const Var<T> f = xgrad::sigmoid(in.gate(in.gates, 0) + xgrad::linear(in.h_in, in.params[0], in.params[2]));
        const Var<T> candidate = xgrad::tanh(in.gate(in.gates, 1) + xgrad::linear(f * in.h_in, in.params[1], in.params[3]));
        return {(T(1) - f) * in.previous[0] + f * candidate};
    }
};

// A cell that declares two states but returns one.
struct MiscountedCell : IndRNNCell {
    static constexpr std::size_t states = 2;
};
}  // namespace

TEST_CASE("the example's user cell (IndRNN) runs through the same graph-versus-fused grid as the built-in cells") {
    for (const grid::Config& c : grid::full_grid("indrnn")) {
        CAPTURE(c.name());
        grid::check_agreement<double>(c, 1e-10);
        grid::check_agreement<float>(c, 5e-5);
    }
}

TEST_CASE("verify_cell_gradients passes the IndRNN's handwritten backward and fails a wrong one, naming the parameters") {
    nn::RNNVerifyOptions o;
    o.num_layers = 2;
    o.bidirectional = true;
    o.lengths = {6, 2, 4};
    const nn::RNNVerifyReport good = nn::verify_cell_gradients(IndRNNCell{}, o);
    CHECK(good.passed);
    CHECK(good.cell == "IndRNN");
    CHECK(good.parameters.size() == 2 * 2 * 3 + 2 + 1);  // weight_ih, weight_hh, bias_ih per layer and direction; the head; the input
    const std::string report = nn::format_report(good, o);
    CHECK(report.find("rnn.weight_hh_l1_reverse") != std::string::npos);
    CHECK(report.find("all gradients agree") != std::string::npos);

    const nn::RNNVerifyReport bad = nn::verify_cell_gradients(BrokenIndRNNCell{}, o);
    CHECK_FALSE(bad.passed);
    for (const auto& p : bad.parameters) {
        CAPTURE(p.name);
        CHECK(p.fused_vs_graph.passed == (p.name.find("weight_hh") == std::string::npos));
        CHECK(p.graph_vs_numeric.passed);  // the graph path is right; only the handwritten rows are wrong
    }
    CHECK(nn::format_report(bad, o).find("GRADIENTS DISAGREE") != std::string::npos);
}

TEST_CASE("a cell with only a graph step gets stacking, directions, lengths, dropout and zoneout, and refuses fused clearly") {
    xgrad::Generator gen(6);
    nn::Recurrent<MinimalGatedUnit, double> mgu(nn::RecurrentOptions(3, 4).num_layers(2).bidirectional(true).batch_first(true), gen);
    const std::vector<std::string> expected = {"weight_ih_l0", "weight_hf_l0", "weight_hh_l0", "bias_ih_l0", "bias_hf_l0", "bias_hh_l0"};
    const auto named = mgu.named_parameters();
    for (std::size_t i = 0; i < expected.size(); ++i) CHECK(named[i].first == expected[i]);
    CHECK(named[0].second.shape() == xgrad::Shape{8, 3});  // gates * H rows
    const Tensor<double> x = xgrad::uniform<double>({2, 5, 3}, -1, 1, gen);
    const Tensor<double> h0 = xgrad::uniform<double>({4, 2, 4}, -1, 1, gen);
    auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) {
        auto r = mgu.forward(v[0], {v[1]}, {5, 3});
        return xgrad::concat(std::vector{xgrad::reshape(r.output, {-1}), xgrad::reshape(r.h_n(), {-1})}, 0);
    }, {x, h0}, mgu.parameters());
    INFO(report.summary());
    CHECK(report.passed);

    mgu.settings().zoneout = 0.2;
    mgu.settings().dropout = 0.3;
    xgrad::Graph<double> g;
    CHECK(mgu.forward(g.constant(x)).output.shape() == xgrad::Shape{2, 5, 8});
    mgu.settings() = nn::RecurrentSettings{};
    mgu.settings().implementation = nn::RNNImplementation::fused;
    CHECK_THROWS_WITH_AS(mgu.forward(g.constant(x)),
                         "MGU: implementation fused needs the cell's fused rows (forward_row, backward_row); this cell has only its graph step",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::verify_cell_gradients(MinimalGatedUnit{}, nn::RNNVerifyOptions{}),
                         doctest::Contains("MGU: implementation fused needs the cell's fused rows"), std::invalid_argument);
}

TEST_CASE("a cell whose step returns a different number of states than it declares is refused, naming it") {
    nn::Recurrent<MiscountedCell, double> layer(nn::RecurrentOptions(3, 4));
    xgrad::Graph<double> g;
    CHECK_THROWS_WITH_AS(layer.forward(g.constant(Tensor<double>(xt::zeros<double>({2, 1, 3})))),
                         "IndRNN: the cell's step returned 1 states, it declares 2", std::logic_error);
}

TEST_CASE("make_recurrent builds every built-in cell by name, and refuses other names and a nonlinearity they do not have") {
    CHECK(nn::recurrent_cell_names() == std::vector<std::string>{"rnn", "lstm", "gru"});
    for (const std::string& name : nn::recurrent_cell_names()) {
        auto layer = nn::make_recurrent<float>(name, nn::RecurrentOptions(3, 4).num_layers(2));
        CAPTURE(name);
        CHECK(layer->cell().gates() * 4 == layer->named_parameters()[0].second.shape()[0]);
        CHECK(layer->cell().states() == (name == "lstm" ? 2u : 1u));
    }
    CHECK(nn::make_recurrent<float>("rnn", nn::RecurrentOptions(3, 4))->type_name() == "RNN");
    CHECK_THROWS_WITH_AS(nn::make_recurrent<float>("lstmx", nn::RecurrentOptions(3, 4)),
                         "unknown recurrent cell 'lstmx' (known: rnn, lstm, gru)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::LSTM<float>(nn::LSTMOptions(3, 4).nonlinearity(nn::Nonlinearity::relu)),
                         "lstm: nonlinearity applies to RNN (Elman) cells only", std::invalid_argument);
}

TEST_CASE("settings change between calls, the structure was fixed at construction") {
    xgrad::Generator gen(2);
    nn::GRU<double> gru(nn::GRUOptions(3, 4).num_layers(2).dropout(0.5), gen);
    CHECK(gru.settings().dropout == 0.5);
    CHECK(gru.spec().num_layers == 2);
    const Tensor<double> x = xgrad::uniform<double>({4, 2, 3}, -1, 1, gen);
    Tensor<double> outputs[2];
    for (int i = 0; i < 2; ++i) {
        gru.settings().implementation = i == 0 ? nn::RNNImplementation::graph : nn::RNNImplementation::fused;
        gru.settings().dropout = 0.0;
        xgrad::Graph<double> g;
        outputs[i] = gru.forward(g.constant(x)).output.value();
    }
    CHECK(xt::allclose(outputs[0], outputs[1], 1e-12, 1e-12));
    gru.settings().zoneout_cell = std::nan("");
    xgrad::Graph<double> g;
    CHECK_THROWS_WITH_AS(gru.forward(g.constant(x)), doctest::Contains("GRU: zoneout_cell = nan is not in [0, 1)"), std::invalid_argument);
}
