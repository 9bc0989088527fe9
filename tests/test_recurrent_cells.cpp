// Cells as types: a user's cell (the example's IndRNN) through the same graph-versus-fused grid
// as the built-in cells, the library's cross-check of a handwritten backward (and that it catches
// a wrong one), a cell with only a graph step, and the cell registry.
#include <doctest/doctest.h>

#include <xtensor/xview.hpp>

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

TEST_CASE("with two threads the fused kernel splits each step's rows, and still agrees with the graph path") {
    // 64 rows of 256 or more gate values: above the size from which the kernel splits a step's rows
    // for the built-in cells (concurrent_rows); the user cells do not declare it, and stay whole.
    const int threads = xgrad::blas_threads();
    xgrad::set_blas_threads(2);
    for (const char* cell : {"rnn", "lstm", "gru", "indrnn", "leaky3"}) {
        grid::Config c{cell, nn::Nonlinearity::tanh, true, 2, true, false, true, true};
        c.batch = 64;
        c.hidden = 256;
        CAPTURE(c.name());
        grid::check_agreement<double>(c, 1e-10);
    }
    xgrad::set_blas_threads(threads);
}

TEST_CASE("a cell with three states runs through the grid, and verify_cell_gradients checks it") {
    for (const grid::Config& c : grid::full_grid("leaky3")) {
        CAPTURE(c.name());
        grid::check_agreement<double>(c, 1e-10);
    }
    nn::RecurrentVerifyOptions o;
    o.num_layers(2);
    o.lengths({6, 0, 4});
    const auto report = nn::verify_cell_gradients(grid::LeakyMemoryCell{}, o);
    CHECK(report.passed);
    CHECK(report.cell == "LeakyMemory");
}

TEST_CASE("a zero-length sequence keeps its initial states and passes their gradients straight back, both paths") {
    for (const std::string& name : nn::recurrent_cell_names()) {
        xgrad::Generator gen(9);
        auto layer = nn::make_recurrent<double>(name, nn::RecurrentOptions(3, 4).num_layers(2), gen);
        const std::size_t S = layer->cell().states();
        const Tensor<double> x = xgrad::uniform<double>({4, 2, 3}, -1, 1, gen);
        std::vector<Tensor<double>> initial;
        for (std::size_t s = 0; s < S; ++s) initial.push_back(xgrad::uniform<double>({2, 2, 4}, -1, 1, gen));
        for (nn::RecurrentImplementation impl : {nn::RecurrentImplementation::graph, nn::RecurrentImplementation::fused}) {
            CAPTURE(name);
            layer->settings().implementation(impl);
            xgrad::Graph<double> g;
            std::vector<Var<double>> given;
            for (const auto& t : initial) given.push_back(g.variable(t));
            auto r = layer->forward_states(g.constant(x), given, {0, 4});
            auto loss = xgrad::sum(r.output);
            for (const auto& state : r.states) loss = loss + xgrad::sum(state);
            loss.backward();
            CHECK(xt::amax(xt::abs(xt::view(r.output.value(), xt::all(), 0, xt::all())))() == 0.0);
            for (std::size_t s = 0; s < S; ++s) {
                CHECK(xt::view(r.states[s].value(), xt::all(), 0, xt::all()) == xt::view(initial[s], xt::all(), 0, xt::all()));
                CHECK(xt::all(xt::equal(xt::view(given[s].grad(), xt::all(), 0, xt::all()), 1.0)));  // ∂(Σ state)/∂(its initial value)
            }
        }
    }
}

TEST_CASE("verify_cell_gradients passes the IndRNN's handwritten backward and fails a wrong one, naming the parameters") {
    nn::RecurrentVerifyOptions o;
    o.num_layers(2);
    o.bidirectional(true);
    o.lengths({6, 2, 4});
    const nn::RecurrentVerifyReport good = nn::verify_cell_gradients(IndRNNCell{}, o);
    CHECK(good.passed);
    CHECK(good.cell == "IndRNN");
    CHECK(good.parameters.size() == 2 * 2 * 3 + 2 + 1);  // weight_ih, weight_hh, bias_ih per layer and direction; the head; the input
    const std::string report = nn::format_report(good, o);
    CHECK(report.find("rnn.weight_hh_l1_reverse") != std::string::npos);
    CHECK(report.find("all gradients agree") != std::string::npos);

    const nn::RecurrentVerifyReport bad = nn::verify_cell_gradients(BrokenIndRNNCell{}, o);
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
        return xgrad::concat(std::vector{xgrad::reshape(r.output, {-1}), xgrad::reshape(r.h_n, {-1})}, 0);
    }, {x, h0}, mgu.parameters());
    INFO(report.summary());
    CHECK(report.passed);

    mgu.settings().zoneout(0.2);
    mgu.settings().dropout(0.3);
    xgrad::Graph<double> g;
    CHECK(mgu.forward(g.constant(x)).output.shape() == xgrad::Shape{2, 5, 8});
    mgu.settings() = nn::RecurrentSettings{};
    mgu.settings().implementation(nn::RecurrentImplementation::fused);
    CHECK_THROWS_WITH_AS(mgu.forward(g.constant(x)),
                         "MGU: implementation fused needs the cell's fused rows (forward_row, backward_row); this cell has only its graph step",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::verify_cell_gradients(MinimalGatedUnit{}, nn::RecurrentVerifyOptions{}),
                         doctest::Contains("MGU: implementation fused needs the cell's fused rows"), std::invalid_argument);
}

// A cell whose state loses its batch axis: broadcasting would carry it on silently.
struct MisshapedCell : IndRNNCell {
    template <class T>
    std::vector<Var<T>> step(const nn::CellStep<T>& in) const {
        return {xgrad::sum(IndRNNCell::step(in)[0], {0}, true)};
    }
};

TEST_CASE("a cell whose step returns the wrong number or shape of states is refused, naming it") {
    nn::Recurrent<MiscountedCell, double> miscounted(nn::RecurrentOptions(3, 4));
    xgrad::Graph<double> g;
    const Var<double> x = g.constant(Tensor<double>(xt::zeros<double>({2, 2, 3})));
    CHECK_THROWS_WITH_AS(miscounted.forward(x), "IndRNN: the cell's step returned 1 states, it declares 2", std::logic_error);
    nn::Recurrent<MisshapedCell, double> misshaped(nn::RecurrentOptions(3, 4));
    CHECK_THROWS_WITH_AS(misshaped.forward(x), "IndRNN: the cell's step returned state 0 of shape (1, 4), expected (2, 4)",
                         std::logic_error);
}

// A cell that keeps a graph of its own and returns its state from there, cut off from the layer's.
struct ForeignGraphCell : IndRNNCell {
    template <class T>
    std::vector<Var<T>> step(const nn::CellStep<T>& in) const {
        static xgrad::Graph<T> elsewhere;
        return {elsewhere.constant(IndRNNCell::step(in)[0].value())};
    }
};

TEST_CASE("a cell whose step returns a state from another graph is refused in forward, naming the cell and the state") {
    nn::Recurrent<ForeignGraphCell, double> layer(nn::RecurrentOptions(3, 4));
    xgrad::Graph<double> g;
    const Var<double> x = g.variable(Tensor<double>(xt::ones<double>({2, 2, 3})));
    CHECK_THROWS_WITH_AS(layer.forward(x),
                         "IndRNN: the IndRNN cell's step returned state 0 on another graph than the layer's input "
                         "(build the states from the step's inputs)",
                         std::logic_error);
}

// Asks for the kernel's recurrent GEMM but declares no weight_hh of (gates * H, H).
struct NoMatrixCell : IndRNNCell {
    static constexpr nn::RecurrentGemm recurrent_gemm = nn::RecurrentGemm::into_gates;
};

TEST_CASE("a cell's fused declaration is checked when the layer is built") {
    CHECK_THROWS_WITH_AS(nn::Recurrent<NoMatrixCell>(nn::RecurrentOptions(3, 4)),
                         "IndRNN: the IndRNN cell asks for the kernel's recurrent GEMM, so its first parameter must be weight_hh of shape (4, 4)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::RecurrentBase<float>(nullptr, nn::RecurrentOptions(3, 4)), "RecurrentBase: no cell given (null)",
                         std::invalid_argument);
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
                         doctest::Contains("LSTM: nonlinearity applies to RNN (Elman) layers only"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::Recurrent<IndRNNCell>(nn::RecurrentOptions(3, 4).nonlinearity(nn::Nonlinearity::relu)),
                         doctest::Contains("IndRNN: nonlinearity applies to RNN (Elman) layers only"), std::invalid_argument);
    xgrad::Generator gen(1);
    nn::RNN<double> relu(nn::RNNOptions(3, 4).nonlinearity(nn::Nonlinearity::relu), gen);
    xgrad::Graph<double> g;
    CHECK(xt::amin(relu.forward(g.constant(xgrad::uniform<double>({3, 2, 3}, -2, 2, gen))).output.value())() == 0.0);
}

TEST_CASE("settings change between calls, the structure was fixed at construction") {
    xgrad::Generator gen(2);
    nn::GRU<double> gru(nn::GRUOptions(3, 4).num_layers(2).dropout(0.5), gen);
    CHECK(gru.settings().dropout() == 0.5);
    CHECK(gru.spec().num_layers == 2);
    const Tensor<double> x = xgrad::uniform<double>({4, 2, 3}, -1, 1, gen);
    Tensor<double> outputs[2];
    for (int i = 0; i < 2; ++i) {
        gru.settings().implementation(i == 0 ? nn::RecurrentImplementation::graph : nn::RecurrentImplementation::fused);
        gru.settings().dropout(0.0);
        xgrad::Graph<double> g;
        outputs[i] = gru.forward(g.constant(x)).output.value();
    }
    CHECK(xt::allclose(outputs[0], outputs[1], 1e-12, 1e-12));
    gru.settings().zoneout_cell(std::nan(""));
    xgrad::Graph<double> g;
    CHECK_THROWS_WITH_AS(gru.forward(g.constant(x)), doctest::Contains("GRU: zoneout_cell = nan is not in [0, 1)"), std::invalid_argument);
}

TEST_CASE("the fused op's gradients are right when only a final state enters the loss, or only the output") {
    for (const std::string& name : nn::recurrent_cell_names()) {
        for (int used = 0; used < 3; ++used) {  // 0: the output only, 1: h_n only, 2: the last state only
            CAPTURE(name);
            CAPTURE(used);
            xgrad::Generator gen(4);
            auto layer = nn::make_recurrent<double>(name, nn::RecurrentOptions(3, 4).num_layers(2).bidirectional(true), gen);
            const Tensor<double> x = xgrad::uniform<double>({5, 2, 3}, -1, 1, gen);
            std::vector<Tensor<double>> grads[2];
            for (int i = 0; i < 2; ++i) {
                layer->settings().implementation(i == 0 ? nn::RecurrentImplementation::graph : nn::RecurrentImplementation::fused);
                layer->zero_grad();
                xgrad::Graph<double> g;
                Var<double> input = g.variable(x);
                auto r = layer->forward_states(input, {}, {5, 3});
                const Var<double>& picked = used == 0 ? r.output : used == 1 ? r.states.front() : r.states.back();
                xgrad::sum(picked * picked).backward();
                grads[i].push_back(input.grad());
                for (const auto& p : layer->parameters()) grads[i].push_back(p.grad());
            }
            for (std::size_t k = 0; k < grads[0].size(); ++k) {
                CAPTURE(k);
                CHECK(xt::allclose(grads[0][k], grads[1][k], 1e-10, 1e-12));
            }
        }
    }
}

TEST_CASE("the fused kernel turns its saved gates into gate gradients only in a backward that does not retain the graph") {
    // The first backward retains the graph, so it must leave the cache intact for the second; the
    // second may spend it. Both must give the same gradients, equal to the graph path's.
    for (const char* cell : {"rnn", "lstm", "gru"}) {
        CAPTURE(cell);
        xgrad::Generator gen(21);
        auto layer = nn::make_recurrent<double>(cell, nn::RecurrentOptions(3, 5).num_layers(2).bidirectional(true), gen);
        const Tensor<double> input = xgrad::uniform<double>({4, 2, 3}, -1, 1, gen);
        std::vector<std::vector<Tensor<double>>> grads;
        for (auto impl : {nn::RecurrentImplementation::fused, nn::RecurrentImplementation::graph}) {
            layer->settings().implementation(impl);
            layer->zero_grad();
            xgrad::Graph<double> g;
            auto r = layer->forward_states(g.variable(input));
            auto loss = xgrad::sum(r.output * r.output);
            for (int pass = 0; pass < 2; ++pass) {
                loss.backward(/*retain_graph=*/pass == 0);
                grads.emplace_back();
                for (const auto& p : layer->parameters()) grads.back().push_back(p.grad());
            }
        }
        REQUIRE(grads.size() == 4);  // fused after 1 and 2 passes, graph after 1 and 2
        for (std::size_t i = 0; i < grads[0].size(); ++i) {
            CAPTURE(i);
            CHECK(xt::amax(xt::abs(grads[1][i] - 2.0 * grads[0][i]))() < 1e-12);  // the second pass added the same again
            CHECK(xt::amax(xt::abs(grads[1][i] - grads[3][i]))() < 1e-10);
        }
    }
}

TEST_CASE("checkpoint_every gives the whole sequence's outputs and gradients, both implementations, over the grid") {
    // Unidirectional configurations of the grid (lengths, h0, 1 or 2 layers, batch_first), with
    // dropout between layers; segments of 2 steps over T = 5 (the last one shorter).
    for (const char* cell : {"rnn", "lstm", "gru", "indrnn", "leaky3"}) {
        for (const grid::Config& c : grid::full_grid(cell)) {
            if (c.bidirectional) continue;
            for (auto impl : {nn::RecurrentImplementation::graph, nn::RecurrentImplementation::fused}) {
                CAPTURE(c.name());
                CAPTURE(impl == nn::RecurrentImplementation::fused);
                xgrad::Generator gen(31);
                auto layer = grid::make_layer<double>(c, gen);
                layer->settings().implementation(impl);
                layer->settings().dropout(c.layers > 1 ? 0.3 : 0.0);
                const std::size_t S = layer->cell().states();
                const xgrad::Shape in_shape = c.batch_first ? xgrad::Shape{grid::B, grid::T_, grid::I} : xgrad::Shape{grid::T_, grid::B, grid::I};
                const Tensor<double> input = xgrad::uniform<double>(in_shape, -1, 1, gen);
                std::vector<Tensor<double>> initial;
                for (std::size_t i = 0; i < S; ++i) initial.push_back(xgrad::uniform<double>({c.layers, grid::B, grid::H}, -1, 1, gen));
                const std::vector<std::int64_t> lengths = c.variable_lengths ? std::vector<std::int64_t>{5, 1, 3} : std::vector<std::int64_t>{};
                const std::string dropout_state = layer->dropout_generator().state();
                std::vector<Tensor<double>> results[2];
                for (std::size_t every : {std::size_t{0}, std::size_t{2}}) {
                    layer->settings().checkpoint_every(every);
                    layer->dropout_generator().set_state(dropout_state);
                    layer->zero_grad();
                    xgrad::Graph<double> g;
                    const Var<double> x = g.variable(input);
                    std::vector<Var<double>> given;
                    for (std::size_t i = 0; c.with_h0 && i < S; ++i) given.push_back(g.variable(initial[i]));
                    auto r = layer->forward_states(x, given, lengths);
                    auto loss = xgrad::sum(r.output * r.output);
                    for (const auto& h : r.states) loss = loss + xgrad::sum(xgrad::tanh(h));
                    loss.backward();
                    auto& out = results[every == 0 ? 0 : 1];
                    out.push_back(r.output.value());
                    for (const auto& h : r.states) out.push_back(h.value());
                    out.push_back(x.grad());
                    for (const auto& v : given) out.push_back(v.grad());
                    for (const auto& p : layer->parameters()) out.push_back(p.grad());
                }
                REQUIRE(results[0].size() == results[1].size());
                for (std::size_t i = 0; i < results[0].size(); ++i) {
                    CAPTURE(i);
                    CHECK(results[0][i].shape() == results[1][i].shape());
                    CHECK(xt::amax(xt::abs(results[0][i] - results[1][i]))() <= 1e-10);
                }
            }
        }
    }
    nn::LSTM<double> bidirectional(nn::LSTMOptions(3, 4).bidirectional(true).checkpoint_every(2));
    xgrad::Graph<double> g;
    CHECK_THROWS_WITH_AS(bidirectional.forward_states(g.variable(xt::zeros<double>({5, 2, 3}))),
                         "LSTM: checkpoint_every does not combine with a bidirectional layer (its reverse direction needs the whole sequence)",
                         std::invalid_argument);
}

TEST_CASE("checkpointed_loss gives the whole sequence's loss, final states and gradients, both implementations, over the grid") {
    // A head and a summed cross-entropy per segment of 2 steps over T = 5, against the layer run at
    // once with the same head and loss: h0 given or not, 1 or 2 layers with dropout between them.
    for (const char* cell : {"rnn", "lstm", "gru", "indrnn", "leaky3"}) {
        for (const grid::Config& c : grid::full_grid(cell)) {
            if (c.bidirectional || c.batch_first || c.variable_lengths) continue;
            for (auto impl : {nn::RecurrentImplementation::graph, nn::RecurrentImplementation::fused}) {
                CAPTURE(c.name());
                CAPTURE(impl == nn::RecurrentImplementation::fused);
                xgrad::Generator gen(37);
                auto layer = grid::make_layer<double>(c, gen);
                layer->settings().implementation(impl);
                layer->settings().dropout(c.layers > 1 ? 0.3 : 0.0);
                nn::Linear<double> head(grid::H, c.input, true, gen);
                const std::size_t S = layer->cell().states();
                xgrad::Indices ids = xgrad::Indices::from_shape({grid::T_, c.batch}), targets = ids;
                for (std::size_t i = 0; i < ids.size(); ++i) {
                    ids.data()[i] = static_cast<std::int64_t>((7 * i + 3) % c.input);
                    targets.data()[i] = static_cast<std::int64_t>((5 * i + 1) % c.input);
                }
                std::vector<Tensor<double>> initial;
                for (std::size_t i = 0; i < S; ++i) initial.push_back(xgrad::uniform<double>({c.layers, c.batch, grid::H}, -1, 1, gen));
                xgrad::CrossEntropyOptions sum;
                sum.reduction(xgrad::CrossEntropyOptions::Reduction::sum);
                const std::string dropout_state = layer->dropout_generator().state();
                std::vector<Tensor<double>> results[2];
                for (bool segmented : {false, true}) {
                    layer->dropout_generator().set_state(dropout_state);
                    layer->zero_grad();
                    head.zero_grad();
                    xgrad::Graph<double> g;
                    std::vector<Var<double>> given;
                    for (std::size_t i = 0; c.with_h0 && i < S; ++i) given.push_back(g.variable(initial[i]));
                    Var<double> loss;
                    std::vector<Var<double>> states;
                    if (segmented) {
                        auto segment_loss = [&](const Var<double>& output, std::size_t t0) {
                            const std::size_t n = output.shape()[0];
                            const xgrad::Indices part = xt::view(targets, xt::range(t0, t0 + n), xt::all());
                            return xgrad::cross_entropy(head.forward(output), part, sum);
                        };
                        auto r = layer->checkpointed_loss(g, ids, given, 2, segment_loss);
                        loss = r.loss;
                        states = r.states;
                    } else {
                        auto r = layer->forward_indices(g, ids, given);
                        loss = xgrad::cross_entropy(head.forward(r.output), targets, sum);
                        states = r.states;
                    }
                    for (const auto& h : states) loss = loss + xgrad::sum(xgrad::tanh(h));
                    loss.backward();
                    auto& out = results[segmented ? 1 : 0];
                    out.push_back(loss.value());
                    for (const auto& h : states) out.push_back(h.value());
                    for (const auto& v : given) out.push_back(v.grad());
                    for (const auto& p : layer->parameters()) out.push_back(p.grad());
                    for (const auto& p : head.parameters()) out.push_back(p.grad());
                }
                REQUIRE(results[0].size() == results[1].size());
                for (std::size_t i = 0; i < results[0].size(); ++i) {
                    CAPTURE(i);
                    CHECK(results[0][i].shape() == results[1][i].shape());
                    CHECK(xt::amax(xt::abs(results[0][i] - results[1][i]))() <= 1e-10);
                }
            }
        }
    }
}

TEST_CASE("checkpointed_loss replays the generators its segment loss draws from, and refuses what it cannot do") {
    // Dropout in the head: the recomputation in backward must draw the masks of the first run, so
    // the gradients equal those of the same segments run without checkpointing.
    const std::size_t T = 7, B = 2, V = 5, H = 4, k = 3;
    xgrad::Indices ids = xgrad::Indices::from_shape({T, B});
    for (std::size_t i = 0; i < ids.size(); ++i) ids.data()[i] = static_cast<std::int64_t>((3 * i + 1) % V);
    std::vector<Tensor<double>> grads[2];
    for (bool checkpointed : {false, true}) {
        xgrad::Generator gen(41), head_dropout(43);
        nn::GRU<double> layer(nn::GRUOptions(V, H), gen);
        nn::Linear<double> head(H, V, true, gen);
        auto segment_loss = [&](const Var<double>& output, std::size_t) {
            return xgrad::sum(xgrad::tanh(head.forward(xgrad::dropout(output, 0.5, head_dropout))));
        };
        xgrad::Graph<double> g;
        Var<double> loss;
        if (checkpointed) {
            loss = layer.checkpointed_loss(g, ids, {}, k, segment_loss, {&head_dropout}).loss;
        } else {
            std::vector<Var<double>> states;
            for (std::size_t t0 = 0; t0 < T; t0 += k) {
                const xgrad::Indices part = xt::view(ids, xt::range(t0, std::min(T, t0 + k)), xt::all());
                auto r = layer.forward_indices(g, part, states);
                const Var<double> part_loss = segment_loss(r.output, t0);
                loss = loss.defined() ? loss + part_loss : part_loss;
                states = r.states;
            }
        }
        loss.backward();
        for (const auto& p : layer.parameters()) grads[checkpointed].push_back(p.grad());
        for (const auto& p : head.parameters()) grads[checkpointed].push_back(p.grad());
    }
    for (std::size_t i = 0; i < grads[0].size(); ++i) {
        CAPTURE(i);
        CHECK(xt::amax(xt::abs(grads[0][i] - grads[1][i]))() <= 1e-12);
    }

    using E = std::invalid_argument;
    xgrad::Graph<double> g;
    auto scalar = [](const Var<double>& output, std::size_t) { return xgrad::sum(output); };
    nn::LSTM<double> lstm(nn::LSTMOptions(V, H));
    CHECK_THROWS_WITH_AS(lstm.checkpointed_loss(g, ids, {}, 0, scalar), "LSTM: checkpointed_loss needs a segment of at least one step", E);
    CHECK_THROWS_WITH_AS(lstm.checkpointed_loss(g, ids, {}, 2, [](const Var<double>& output, std::size_t) { return output; }),
                         "LSTM: checkpointed_loss: the segment loss must be a scalar, got shape (2, 2, 4)", xgrad::ShapeError);
    nn::LSTM<double> zoned(nn::LSTMOptions(V, H).zoneout(0.1));
    CHECK_THROWS_WITH_AS(zoned.checkpointed_loss(g, ids, {}, 2, scalar), "LSTM: checkpointed_loss does not combine with zoneout", E);
    nn::LSTM<double> batch_first(nn::LSTMOptions(V, H).batch_first(true));
    CHECK_THROWS_WITH_AS(batch_first.checkpointed_loss(g, ids, {}, 2, scalar), "LSTM: checkpointed_loss takes time-major ids (T, B)", E);
}

