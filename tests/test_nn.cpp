// nn/: modules and their state dicts, Linear, Embedding, Dropout, gradient clipping, and
// truncated BPTT with bounded memory.
#include <cmath>
#include <limits>
#include <filesystem>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include <xgrad/xgrad.hpp>

#include "heap_growth.hpp"

using xgrad::Graph;
using xgrad::Parameter;
using xgrad::Tensor;
using xgrad::Var;

namespace {
class TwoLayer : public xgrad::nn::Module<double> {
  public:
    TwoLayer() : Module("TwoLayer") {
        register_module("fc1", fc1);
        register_module("drop", drop);
        register_module("fc2", fc2);
    }
    Var<double> forward(const Var<double>& x) { return fc2.forward(drop.forward(xgrad::tanh(fc1.forward(x)))); }
    xgrad::nn::Linear<double> fc1{3, 5};
    xgrad::nn::Dropout<double> drop{0.5};
    xgrad::nn::Linear<double> fc2{5, 2, false};
};

std::filesystem::path temp_file(const std::string& name) {
    auto dir = std::filesystem::temp_directory_path() / ("xgrad_test_nn_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return dir / name;
}
}  // namespace

TEST_CASE("modules: nested names, counts, train/eval, zero_grad") {
    TwoLayer net;
    std::vector<std::string> names;
    for (const auto& [name, p] : net.named_parameters()) names.push_back(name);
    CHECK(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight"});
    CHECK(net.parameter_count() == 3 * 5 + 5 + 5 * 2);
    CHECK(net.fc1.weight.shape() == xgrad::Shape{5, 3});
    CHECK(net.is_training());
    net.eval();
    CHECK_FALSE(net.drop.is_training());
    Graph<double> g;
    auto x = g.constant(xt::ones<double>({4, 3}));
    auto y1 = net.forward(x), y2 = net.forward(x);
    CHECK(y1.value() == y2.value());  // no dropout in eval mode
    xgrad::sum(y1).backward();
    CHECK(xt::amax(xt::abs(net.fc1.weight.grad()))() > 0);
    net.zero_grad();
    for (const auto& p : net.parameters()) CHECK(xt::amax(xt::abs(p.grad()))() == 0);
    net.train();
    CHECK(net.drop.is_training());
}

TEST_CASE("modules refuse duplicate or dotted names") {
    class Twice : public xgrad::nn::Module<float> {
      public:
        explicit Twice(int variant) : Module("Twice") {
            register_module("layer", a);
            if (variant == 0) register_module("layer", b);
            if (variant == 1) register_parameter("layer", Tensor<float>{1.0f});
            if (variant == 2) register_parameter("a.b", Tensor<float>{1.0f});
        }
        xgrad::nn::Linear<float> a{2, 2}, b{2, 2};
    };
    CHECK_THROWS_WITH_AS(Twice(0), "Twice: the name 'layer' is already registered", std::invalid_argument);
    CHECK_THROWS_WITH_AS(Twice(1), "Twice: the name 'layer' is already registered", std::invalid_argument);
    CHECK_THROWS_WITH_AS(Twice(2), "Twice: 'a.b' is not a valid name (non-empty, no '.')", std::invalid_argument);
}

TEST_CASE("modules save to and load from safetensors files") {
    xgrad::manual_seed(1);
    TwoLayer a;
    xgrad::manual_seed(2);
    TwoLayer b;
    CHECK(a.fc1.weight.value() != b.fc1.weight.value());
    const auto path = temp_file("two_layer.safetensors");
    a.save(path.string());
    b.load(path.string());
    for (std::size_t i = 0; i < a.parameters().size(); ++i) CHECK(a.parameters()[i].value() == b.parameters()[i].value());
    xgrad::nn::RNN<float> wrong(xgrad::nn::RNNOptions(3, 4));
    CHECK_THROWS_WITH_AS(wrong.load(path.string()), doctest::Contains("RNN.load_state_dict: missing parameter 'weight_ih_l0'"),
                         std::invalid_argument);
    std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("load_state_dict refuses non-finite weights, naming the parameter, and changes nothing") {
    xgrad::nn::Linear<float> layer(3, 2);
    const auto before = layer.state_dict();
    for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
        auto state = layer.state_dict();
        state.at("bias")(1) = bad;
        CHECK_THROWS_WITH_AS(layer.load_state_dict(state), doctest::Contains("parameter 'bias' holds"), std::invalid_argument);
        CHECK_THROWS_WITH_AS(layer.load_state_dict(state), doctest::Contains("at flat index 1"), std::invalid_argument);
        CHECK(layer.state_dict() == before);
    }
}

TEST_CASE("manual_seed makes construction reproducible") {
    xgrad::manual_seed(5);
    xgrad::nn::Linear<float> a(4, 3);
    xgrad::manual_seed(5);
    xgrad::nn::Linear<float> b(4, 3);
    CHECK(a.weight.value() == b.weight.value());
    CHECK(a.bias.value() == b.bias.value());
}

TEST_CASE("LayerNorm: PyTorch's values and gradients over one and two axes, gradcheck, and bad shapes") {
    const auto f = xgrad::load_safetensors<double>(std::string(XGRAD_FIXTURES_DIR) + "/pytorch_layernorm.safetensors");
    const auto get = [&](const std::string& key) { return f.tensors.at(key); };
    const auto close = [](const Tensor<double>& a, const Tensor<double>& b) {
        return a.shape() == b.shape() && xt::amax(xt::abs(a - b))() <= 1e-12;
    };
    for (const auto& [name, shape] : {std::pair{"last", xgrad::Shape{4}}, std::pair{"two", xgrad::Shape{3, 4}}}) {
        CAPTURE(name);
        const std::string n(name);
        xgrad::nn::LayerNorm<double> norm{xgrad::nn::LayerNormOptions(shape)};
        CHECK(xt::all(xt::equal(norm.weight.value(), 1.0)));
        CHECK(xt::all(xt::equal(norm.bias.value(), 0.0)));
        norm.weight.value() = get(n + ".weight");
        norm.bias.value() = get(n + ".bias");
        xgrad::Graph<double> g;
        auto x = g.variable(get("x"));
        auto y = norm.forward(x);
        CHECK(close(y.value(), get(n + ".output")));
        xgrad::sum(y * g.constant(get("w_out"))).backward();
        CHECK(close(x.grad(), get(n + ".grad.x")));
        CHECK(close(norm.weight.grad(), get(n + ".grad.weight")));
        CHECK(close(norm.bias.grad(), get(n + ".grad.bias")));
        auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) { return norm.forward(v[0]); }, {get("x")},
                                       norm.parameters());
        INFO(report.summary());
        CHECK(report.passed);
    }
    xgrad::nn::LayerNorm<double> plain(xgrad::nn::LayerNormOptions({4}).elementwise_affine(false).eps(1e-3));
    CHECK(plain.parameters().empty());
    xgrad::Graph<double> g;
    auto y = plain.forward(g.constant(Tensor<double>{{1.0, 2.0, 3.0, 4.0}}));
    CHECK(xt::sum(y.value())() == doctest::Approx(0.0).epsilon(1e-12));
    CHECK(y.value()(0, 3) == doctest::Approx(1.5 / std::sqrt(1.25 + 1e-3)));
    CHECK_THROWS_WITH_AS(plain.forward(g.constant(Tensor<double>{{1.0, 2.0, 3.0}})),
                         "LayerNorm: input (1, 3) does not end in normalized_shape (4,)", xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(xgrad::nn::LayerNorm<double>(xgrad::nn::LayerNormOptions({4}).eps(0)),
                         "LayerNorm: eps = 0 must be positive and finite", std::invalid_argument);
    CHECK_THROWS_WITH_AS(xgrad::nn::LayerNorm<double>(xgrad::nn::LayerNormOptions(xgrad::Shape{})),
                         "LayerNorm: normalized_shape () must have at least one axis and none of size 0", std::invalid_argument);
}

TEST_CASE("Linear: PyTorch's initialization bounds, values and gradients") {
    xgrad::Generator gen(3);
    xgrad::nn::Linear<double> fc(16, 4, true, gen);
    CHECK(xt::amax(xt::abs(fc.weight.value()))() <= 0.25);  // 1 / sqrt(16)
    CHECK(xt::amax(xt::abs(fc.bias.value()))() <= 0.25);
    Tensor<double> x = xgrad::uniform<double>({2, 3, 16}, -1, 1, gen);
    auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) { return fc.forward(v[0]); }, {x},
                                   fc.parameters());
    INFO(report.summary());
    CHECK(report.passed);
    CHECK_THROWS_WITH_AS(xgrad::nn::Linear<float>(0, 3), "Linear: in_features (0) and out_features (3) must be positive",
                         std::invalid_argument);
}

TEST_CASE("Embedding gathers rows and accumulates repeated ones") {
    xgrad::Generator gen(4);
    xgrad::nn::Embedding<double> embed(5, 3, gen);
    Graph<double> g;
    xgrad::Indices ids = {{1, 4}, {1, 0}};
    auto y = embed.forward(g, ids);
    CHECK(y.shape() == xgrad::Shape{2, 2, 3});
    xgrad::sum(y).backward();
    CHECK(embed.weight.grad()(1, 0) == 2.0);
    CHECK(embed.weight.grad()(2, 0) == 0.0);
    CHECK_THROWS_AS(embed.forward(g, xgrad::Indices{5}), std::invalid_argument);
}

TEST_CASE("Dropout: p validated, own seeded generator") {
    CHECK_THROWS_WITH_AS(xgrad::nn::Dropout<float>(1.0), "Dropout: p = 1 is not in [0, 1)", std::invalid_argument);
    xgrad::Generator g1(9), g2(9);
    xgrad::nn::Dropout<float> a(0.5, g1), b(0.5, g2);
    Graph<float> g;
    auto x = g.constant(xt::ones<float>({100}));
    CHECK(a.forward(x).value() == b.forward(x).value());
}

TEST_CASE("clip_grad_norm returns the norm before clipping and scales to max_norm") {
    Parameter<double> a(Tensor<double>{0.0, 0.0}), b(Tensor<double>{0.0});
    a.grad() = Tensor<double>{3.0, 0.0};
    b.grad() = Tensor<double>{4.0};
    const double norm = xgrad::nn::clip_grad_norm<double>({a, b}, 1.0);
    CHECK(norm == doctest::Approx(5.0));
    CHECK(a.grad()(0) == doctest::Approx(0.6).epsilon(1e-5));
    CHECK(b.grad()(0) == doctest::Approx(0.8).epsilon(1e-5));
    CHECK(xgrad::nn::clip_grad_norm<double>({a, b}, 10.0) == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(b.grad()(0) == doctest::Approx(0.8).epsilon(1e-5));  // under the bar: unchanged
    CHECK(xgrad::nn::clip_grad_norm<double>({a, b}, 10.0, INFINITY) == doctest::Approx(0.8).epsilon(1e-5));
    b.grad()(0) = NAN;
    CHECK(std::isnan(xgrad::nn::clip_grad_norm<double>({a, b}, 1.0)));
    CHECK(a.grad()(0) == doctest::Approx(0.6).epsilon(1e-5));  // left alone
    CHECK_THROWS_AS(xgrad::nn::clip_grad_norm<double>({a}, 0.0), std::invalid_argument);
    CHECK_THROWS_AS(xgrad::nn::clip_grad_norm<double>({a}, 1.0, 3.0), std::invalid_argument);
    CHECK_THROWS_AS(xgrad::nn::clip_grad_norm<double>({a}, 1.0, -INFINITY), std::invalid_argument);  // not the largest magnitude
}

TEST_CASE("clip_grad_value clamps every entry") {
    Parameter<float> a(Tensor<float>{0.0f, 0.0f, 0.0f});
    a.grad() = Tensor<float>{-3.0f, 0.5f, 2.0f};
    xgrad::nn::clip_grad_value<float>({a}, 1.0);
    CHECK(a.grad() == Tensor<float>{-1.0f, 0.5f, 1.0f});
    CHECK_THROWS_AS(xgrad::nn::clip_grad_value<float>({a}, -1.0), std::invalid_argument);
}

TEST_CASE("truncated BPTT: carrying the state across chunks with detach keeps memory bounded") {
    for (auto impl : {xgrad::nn::RecurrentImplementation::graph, xgrad::nn::RecurrentImplementation::fused}) {
        xgrad::Generator gen(6);
        xgrad::nn::RNN<float> rnn(xgrad::nn::RNNOptions(4, 16).num_layers(2).implementation(impl), gen);
        Tensor<float> x = xgrad::uniform<float>({10, 3, 4}, -1, 1, gen);
        std::unique_ptr<Graph<float>> previous;
        Var<float> state;
        auto chunks = [&] {
            for (int chunk = 0; chunk < 25; ++chunk) {
                auto g = std::make_unique<Graph<float>>();
                Var<float> h0 = state.defined() ? state.detach(*g) : Var<float>();
                previous.reset();  // the old chunk's graph can go: nothing of it is needed any more
                auto [output, h_n] = rnn.forward(g->constant(x), h0);
                xgrad::sum(output).backward();
                rnn.zero_grad();
                state = h_n;
                previous = std::move(g);
            }
        };
        // Rounds of 25 chunks of about 45 nodes each: a chunk's graph or node kept per chunk would grow
        // the heap by more than the slack every round, however long the warm-up.
        const test::HeapGrowth growth = test::heap_growth(chunks, 16, 2, 4096);
        CAPTURE(fmt::format("{}", fmt::join(growth.levels, " -> ")));
        CHECK(growth.stopped);
    }
}

TEST_CASE("pad_sequences pads, masks and unpads variable-length sequences, with each sequence's gradient") {
    namespace nn = xgrad::nn;
    const Tensor<double> a{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}, {0.5, 0.25}}, b{{7.0, 8.0}}, empty = Tensor<double>::from_shape({0, 2});
    for (bool batch_first : {false, true}) {
        CAPTURE(batch_first);
        Graph<double> g;
        auto batch = nn::pad_sequences(std::vector{g.variable(a), g.variable(b), g.variable(empty)}, batch_first, -1.0);
        CHECK(batch.lengths == std::vector<std::int64_t>{4, 1, 0});
        CHECK(batch.padded.shape() == (batch_first ? xgrad::Shape{3, 4, 2} : xgrad::Shape{4, 3, 2}));
        const Tensor<double> column1 = xgrad::select(batch.padded, batch_first ? 0 : 1, 1).value();
        CHECK(column1 == Tensor<double>{{7.0, 8.0}, {-1.0, -1.0}, {-1.0, -1.0}, {-1.0, -1.0}});
        const xt::xarray<bool> mask_tb{{true, true, false}, {true, false, false}, {true, false, false}, {true, false, false}};
        CHECK(batch.mask == (batch_first ? xt::xarray<bool>(xt::transpose(mask_tb)) : mask_tb));
        auto back = nn::unpad_sequences(batch.padded, batch.lengths, batch_first);
        REQUIRE(back.size() == 3);
        CHECK(back[0].value() == a);
        CHECK(back[1].value() == b);
        CHECK(back[2].shape() == xgrad::Shape{0, 2});
    }
    // Each sequence gets the gradient of its own steps, none from the padding.
    auto report = xgrad::gradcheck(
        [](const std::vector<Var<double>>& v) { return xgrad::tanh(nn::pad_sequences(v, false, 0.5).padded); },
        {a, b, Tensor<double>{{0.1, -0.2}, {0.3, 0.4}}});
    INFO(report.summary());
    CHECK(report.passed);
    // Token ids the same way.
    auto ids = nn::pad_sequences(std::vector<xgrad::Indices>{{4, 5, 6}, {7}}, /*batch_first=*/true, -100);
    CHECK(ids.padded == xgrad::Indices{{4, 5, 6}, {7, -100, -100}});
    CHECK(ids.lengths == std::vector<std::int64_t>{3, 1});
    auto time_major = nn::pad_sequences(std::vector<xgrad::Indices>{{4, 5, 6}, {7}}, false, -100);
    CHECK(time_major.padded == xgrad::Indices{{4, 7}, {5, -100}, {6, -100}});
    CHECK(time_major.mask == xt::xarray<bool>{{true, true}, {true, false}, {true, false}});
    // A padding value of another arithmetic type converts, as in PyTorch.
    Graph<double> h;
    CHECK(nn::pad_sequences(std::vector{h.variable(a), h.variable(b)}, true, 0).padded.shape() == xgrad::Shape{2, 4, 2});
    using E = xgrad::ShapeError;
    Graph<double> g;
    CHECK_THROWS_WITH_AS(nn::pad_sequences(std::vector<Var<double>>{}), "pad_sequences: no sequences", E);
    CHECK_THROWS_WITH_AS(nn::pad_sequences(std::vector{g.variable(a), g.variable(Tensor<double>{{1.0, 2.0, 3.0}})}),
                         "pad_sequences: sequence 1 has shape (1, 3), sequence 0 (4, 2): the trailing shapes differ", E);
    auto padded = nn::pad_sequences(std::vector{g.variable(a), g.variable(b)}).padded;
    CHECK_THROWS_WITH_AS(nn::unpad_sequences(padded, {4, 5}), "unpad_sequences: length 5 of sequence 1 is not in [0, 4]", E);
    CHECK_THROWS_WITH_AS(nn::unpad_sequences(padded, {4}), "unpad_sequences: a padded batch (4, 2, 2) ((T, B, ...)) does not hold 1 sequences", E);
}

namespace {
// A model built from a factory, with a list of layers: PyTorch's names for both.
std::shared_ptr<xgrad::nn::Sequential<double>> make_mlp(std::size_t in, std::size_t hidden, std::size_t out) {
    auto mlp = std::make_shared<xgrad::nn::Sequential<double>>();
    mlp->push_back(std::make_shared<xgrad::nn::Linear<double>>(in, hidden));
    mlp->push_back([](const Var<double>& x) { return xgrad::tanh(x); });
    mlp->push_back(std::make_shared<xgrad::nn::Linear<double>>(hidden, out));
    return mlp;
}

class Stacked : public xgrad::nn::Module<double> {
  public:
    Stacked() : Module("Stacked") {
        mlp = register_module("mlp", make_mlp(3, 5, 2));
        layers = register_module("layers", std::make_shared<xgrad::nn::ModuleList<double>>());
        layers->push_back(std::make_shared<xgrad::nn::Linear<double>>(2, 2));
        layers->push_back(std::make_shared<xgrad::nn::Linear<double>>(2, 1, false));
        // A factory that returns unique ownership, as nn::make_recurrent does.
        rnn = register_module("rnn", xgrad::nn::make_recurrent<double>("gru", xgrad::nn::RecurrentOptions(1, 1)));
    }
    Var<double> forward(const Var<double>& x) const {
        Var<double> h = mlp->forward(x);
        for (std::size_t i = 0; i < layers->size(); ++i) h = layers->at<xgrad::nn::Linear<double>>(i).forward(h);
        return h;
    }
    std::shared_ptr<xgrad::nn::Sequential<double>> mlp;
    std::shared_ptr<xgrad::nn::ModuleList<double>> layers;
    std::shared_ptr<xgrad::nn::RecurrentBase<double>> rnn;
};
}  // namespace

TEST_CASE("Sequential and ModuleList: modules from factories, PyTorch's names, state dicts that round-trip") {
    Stacked model;
    std::vector<std::string> names;
    for (const auto& [name, p] : model.named_parameters()) names.push_back(name);
    CHECK(names == std::vector<std::string>{"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "layers.0.weight",
                                            "layers.0.bias", "layers.1.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                                            "rnn.bias_ih_l0", "rnn.bias_hh_l0"});
    Graph<double> g;
    const Tensor<double> x0 = xt::linspace<double>(-1.0, 1.0, 6);
    auto x = g.constant(xt::reshape_view(x0, {2, 3}));
    // Sequential runs its modules in order, the function in its place.
    const auto p = model.mlp->state_dict();
    auto manual = xgrad::linear(xgrad::tanh(xgrad::linear(x, g.constant(p.at("0.weight")), g.constant(p.at("0.bias")))),
                                g.constant(p.at("2.weight")), g.constant(p.at("2.bias")));
    CHECK(xt::allclose(model.mlp->forward(x).value(), manual.value(), 0.0, 0.0));
    // A graph records each parameter once: a model changed by load_state_dict runs on a new graph.
    auto run = [&](const Stacked& m) {
        Graph<double> fresh;
        return Tensor<double>(m.forward(fresh.constant(x.value())).value());
    };
    const Tensor<double> before = run(model);
    Stacked other;
    CHECK_FALSE(xt::allclose(run(other), before));
    other.load_state_dict(model.state_dict());
    CHECK(xt::allclose(run(other), before, 1e-14, 1e-14));
    xgrad::sum(model.forward(x)).backward();
    CHECK(xt::amax(xt::abs(model.mlp->named_parameters()[0].second.grad()))() > 0);
    CHECK_THROWS_WITH_AS(model.layers->at<xgrad::nn::Dropout<double>>(0), "ModuleList: module 0 is a Linear", std::invalid_argument);
    CHECK(model.mlp->at<xgrad::nn::Linear<double>>(2).weight.shape() == xgrad::Shape{2, 5});
    CHECK_THROWS_WITH_AS(model.mlp->at<xgrad::nn::Linear<double>>(1), "Sequential: module 1 is a Functional", std::invalid_argument);
    CHECK_THROWS_WITH_AS(model.layers->at<xgrad::nn::Linear<double>>(2), "ModuleList: index 2 is out of range for 2 modules",
                         std::out_of_range);
    // A module added through the ModuleList interface runs too; one without forward(const Var&) is named.
    xgrad::nn::ModuleList<double>& as_list = *model.mlp;
    as_list.push_back(std::make_shared<xgrad::nn::Linear<double>>(2, 1));
    Graph<double> g2;
    CHECK(model.mlp->forward(g2.constant(x.value())).shape() == xgrad::Shape{2, 1});
    as_list.push_back(std::make_shared<xgrad::nn::Embedding<double>>(3, 2));
    CHECK_THROWS_WITH_AS(model.mlp->forward(g2.constant(x.value())), "Sequential: module 4 (Embedding) has no forward(const Var&)",
                         std::invalid_argument);
    // An output that does not fit the next module: the error names where, as the module's own type.
    xgrad::nn::Sequential<double> misfit;
    misfit.push_back(std::make_shared<xgrad::nn::Linear<double>>(3, 4));
    misfit.push_back(std::make_shared<xgrad::nn::Linear<double>>(5, 1));
    CHECK_THROWS_WITH_AS(misfit.forward(g2.constant(x.value())), doctest::Contains("Sequential: module 1 (Linear): linear:"),
                         xgrad::ShapeError);
}

TEST_CASE("a module registered into itself or into one of its own submodules is refused, naming both") {
    using Seq = xgrad::nn::Sequential<double>;
    auto outer = std::make_shared<Seq>();
    outer->push_back(std::make_shared<xgrad::nn::Linear<double>>(2, 2));
    // REQUIRE: were either accepted, walking the parameters would never end.
    REQUIRE_THROWS_WITH_AS(outer->push_back(outer), "Sequential: register_module '1': the module is this Sequential itself (a cycle)",
                           std::invalid_argument);
    auto inner = outer->push_back(std::make_shared<Seq>());
    auto innermost = inner->push_back(std::make_shared<Seq>());
    REQUIRE_THROWS_WITH_AS(innermost->push_back(outer),
                           "Sequential: register_module '0': that Sequential already contains this Sequential (a cycle)",
                           std::invalid_argument);
    // Nothing was added: the walk over the parameters ends, and a module shared by two parents is not a cycle.
    CHECK(outer->size() == 2);
    CHECK(innermost->size() == 0);
    CHECK(outer->named_parameters().size() == 2);
    auto shared = std::make_shared<xgrad::nn::Linear<double>>(2, 2);
    inner->push_back(shared);
    innermost->push_back(shared);
    CHECK(outer->named_parameters().size() == 6);
}

TEST_CASE("attention over keys of feature size 0 is refused (the scale 1/sqrt(0) would make every weight NaN)") {
    Graph<double> g;
    const auto query = g.constant(Tensor<double>::from_shape({2, 0}));
    const auto keys = g.constant(Tensor<double>::from_shape({2, 3, 0}));
    const auto values = g.constant(Tensor<double>(xt::ones<double>({2, 3, 4})));
    CHECK_THROWS_WITH_AS(xgrad::nn::dot_product_attention(query, keys, values),
                         "dot_product_attention: keys (2, 3, 0) have no features: attention needs a feature size of at least 1",
                         xgrad::ShapeError);
    CHECK_THROWS_AS(xgrad::nn::dot_product_attention(query, keys, values, {}, false), xgrad::ShapeError);
}

TEST_CASE("attention, dot-product and additive: masked keys get exactly zero weight, and gradcheck") {
    namespace nn = xgrad::nn;
    xgrad::Generator gen(5);
    const std::size_t B = 2, Tk = 4, D = 3, Dv = 2;
    const Tensor<double> q = xgrad::uniform<double>({B, D}, -1, 1, gen), k = xgrad::uniform<double>({B, Tk, D}, -1, 1, gen),
                         v = xgrad::uniform<double>({B, Tk, Dv}, -1, 1, gen), qs = xgrad::uniform<double>({B, 3, D}, -1, 1, gen);
    const xt::xarray<bool> mask{{true, true, true, false}, {true, false, false, false}};  // lengths 3 and 1
    nn::AdditiveAttention<double> additive(D, D, 5, gen);
    for (int kind = 0; kind < 3; ++kind) {
        CAPTURE(kind);
        Graph<double> g;
        auto query = g.variable(kind == 1 ? qs : q);
        auto r = kind == 2 ? additive.forward(query, g.variable(k), g.variable(v), mask)
                           : nn::dot_product_attention(query, g.variable(k), g.variable(v), mask);
        const Tensor<double> w = r.weights.value();
        const Tensor<double> w_b = kind == 1 ? Tensor<double>(xt::view(w, xt::all(), 0, xt::all())) : w;  // (B, Tk)
        for (std::size_t b = 0; b < B; ++b) {
            double total = 0;
            for (std::size_t t = 0; t < Tk; ++t) {
                total += w_b(b, t);
                if (!mask(b, t)) CHECK(w_b(b, t) == 0.0);  // exactly
            }
            CHECK(total == doctest::Approx(1.0));
        }
        CHECK(w_b(1, 0) == 1.0);  // one key to attend to
        // The context of sequence 1 is its one real value.
        const Tensor<double> c = r.context.value();
        for (std::size_t j = 0; j < Dv; ++j) CHECK((kind == 1 ? c(1, 0, j) : c(1, j)) == doctest::Approx(v(1, 0, j)));
    }
    // The values by hand: dot-product scaled by 1/sqrt(D), no mask; additive from its parameters.
    {
        Graph<double> g;
        auto dot_all = nn::dot_product_attention(g.constant(q), g.constant(k), g.constant(v));
        auto add_all = additive.forward(g.constant(q), g.constant(k), g.constant(v));
        const auto p = additive.state_dict();
        for (std::size_t b = 0; b < B; ++b) {
            std::vector<double> dot_scores(Tk), add_scores(Tk);
            for (std::size_t t = 0; t < Tk; ++t) {
                for (std::size_t d = 0; d < D; ++d) dot_scores[t] += q(b, d) * k(b, t, d) / std::sqrt(static_cast<double>(D));
                for (std::size_t j = 0; j < 5; ++j) {
                    double e = p.at("bias")(j);
                    for (std::size_t d = 0; d < D; ++d) e += p.at("query_weight")(j, d) * q(b, d) + p.at("key_weight")(j, d) * k(b, t, d);
                    add_scores[t] += p.at("score_weight")(0, j) * std::tanh(e);
                }
            }
            for (auto [scores, out] : {std::pair{dot_scores, dot_all}, std::pair{add_scores, add_all}}) {
                double total = 0;
                for (double s : scores) total += std::exp(s);
                for (std::size_t t = 0; t < Tk; ++t) CHECK(out.weights.value()(b, t) == doctest::Approx(std::exp(scores[t]) / total).epsilon(1e-12));
            }
        }
    }
    // Gradients through query, keys, values and the additive parameters.
    auto dot = [&](const std::vector<Var<double>>& x) { return nn::dot_product_attention(x[0], x[1], x[2], mask).context; };
    auto add = [&](const std::vector<Var<double>>& x) { return additive.forward(x[0], x[1], x[2], mask).context; };
    for (const auto& report : {xgrad::gradcheck(dot, {q, k, v}), xgrad::gradcheck(dot, {qs, k, v}),
                               xgrad::gradcheck(add, {q, k, v}, additive.parameters())}) {
        INFO(report.summary());
        CHECK(report.passed);
    }
    Graph<double> g;
    const xt::xarray<bool> none{{true, true, true, true}, {false, false, false, false}};
    CHECK_THROWS_WITH_AS(nn::dot_product_attention(g.variable(q), g.variable(k), g.variable(v), none),
                         "dot_product_attention: sequence 1 has no key to attend to (its mask is all false)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(nn::dot_product_attention(g.variable(q), g.variable(k), g.variable(v), xt::xarray<bool>(xt::ones<bool>({1, 1}))),
                         "dot_product_attention: the mask must be (batch, keys) = (2, 4), got (1, 1)", xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(additive.forward(g.variable(k), g.variable(k), g.variable(v)),
                         "AdditiveAttention: query (2, 4, 3) and keys (2, 4, 3) must be (batch, 3) and (batch, keys, 3)",
                         xgrad::ShapeError);
    CHECK(additive.named_parameters()[0].first == "query_weight");
}
