// Forward values against hand-computed ones, float agreeing with double, and the error every
// bad argument raises (naming the op and the shapes).
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include <xgrad/xgrad.hpp>

using xgrad::Graph;
using xgrad::Indices;
using xgrad::Tensor;

namespace {
template <class E>
bool close(const Tensor<double>& a, const E& b, double tol = 1e-12) {
    return a.shape() == Tensor<double>(b).shape() && xt::allclose(a, b, tol, tol);
}

Tensor<double> column(std::initializer_list<double> values) {
    Tensor<double> c = Tensor<double>(values);
    c.reshape({values.size(), 1});
    return c;
}
}  // namespace

TEST_CASE("elementwise forward values") {
    Graph<double> g;
    auto a = g.constant(Tensor<double>{{1.0, -2.0}, {0.5, 4.0}});
    auto b = g.constant(Tensor<double>{2.0, -1.0});
    CHECK(close((a + b).value(), Tensor<double>{{3.0, -3.0}, {2.5, 3.0}}));
    CHECK(close((a - b).value(), Tensor<double>{{-1.0, -1.0}, {-1.5, 5.0}}));
    CHECK(close((a * b).value(), Tensor<double>{{2.0, 2.0}, {1.0, -4.0}}));
    CHECK(close((a / b).value(), Tensor<double>{{0.5, 2.0}, {0.25, -4.0}}));
    CHECK(close((1.0 - a).value(), Tensor<double>{{0.0, 3.0}, {0.5, -3.0}}));
    CHECK(close((2.0 / a).value(), Tensor<double>{{2.0, -1.0}, {4.0, 0.5}}));
    CHECK(close(xgrad::relu(a).value(), Tensor<double>{{1.0, 0.0}, {0.5, 4.0}}));
    CHECK(close(xgrad::abs(a).value(), Tensor<double>{{1.0, 2.0}, {0.5, 4.0}}));
    CHECK(close(xgrad::clamp(a, -1.0, 1.0).value(), Tensor<double>{{1.0, -1.0}, {0.5, 1.0}}));
    CHECK(close(xgrad::pow(a, 2.0).value(), Tensor<double>{{1.0, 4.0}, {0.25, 16.0}}));
    CHECK(close(xgrad::sqrt(g.constant(Tensor<double>{4.0, 9.0})).value(), Tensor<double>{2.0, 3.0}));
    CHECK(close(xgrad::exp(g.constant(Tensor<double>{0.0, 1.0})).value(), Tensor<double>{1.0, std::exp(1.0)}));
    CHECK(close(xgrad::log(g.constant(Tensor<double>{1.0, std::exp(2.0)})).value(), Tensor<double>{0.0, 2.0}));
    CHECK(close(xgrad::sigmoid(g.constant(Tensor<double>{0.0})).value(), Tensor<double>{0.5}));
    xt::xarray<bool> mask = {true, false};
    CHECK(close(xgrad::where(mask, a, b).value(), Tensor<double>{{1.0, -1.0}, {0.5, -1.0}}));
}

TEST_CASE("binary ops broadcast every way numpy does: a bias, a column, leading dims, both operands, in either order") {
    // A row repeated and a value per row take a vectorized pass of their own, other broadcasts
    // xtensor's expressions: every case is compared with xtensor's result, element for element,
    // with widths off the SIMD batch size so that the scalar tails run too.
    const std::vector<std::pair<xgrad::Shape, xgrad::Shape>> cases = {
        {{3, 17}, {17}}, {{3, 17}, {3, 1}}, {{2, 3, 5}, {3, 5}}, {{2, 3, 5}, {2, 1, 1}}, {{2, 3, 5}, {2, 3, 1}},
        {{2, 3, 5}, {1, 1, 5}}, {{17}, {3, 17}}, {{3, 1}, {3, 17}}, {{3, 1}, {1, 17}}, {{2, 3, 5}, {1, 3, 1}},
        {{4, 9}, {1}}, {{1}, {4, 9}}, {{4, 9}, {1, 1}}, {{4, 9}, {}}, {{}, {4, 9}}, {{4, 9}, {4, 9}}, {{}, {}},
        {{0, 17}, {17}}, {{3, 0}, {3, 1}}, {{}, {0}}, {{2, 1, 5}, {2, 3, 5}}};
    xgrad::Generator gen(5);
    for (const auto& shapes : cases) {
        const xgrad::Shape &sa = shapes.first, &sb = shapes.second;  // not a structured binding: CAPTURE's lambda reads them
        CAPTURE(xgrad::shape_str(sa));
        CAPTURE(xgrad::shape_str(sb));
        Graph<double> g;
        const Tensor<double> va = xgrad::uniform<double>(sa, 0.5, 2.0, gen), vb = xgrad::uniform<double>(sb, 0.5, 2.0, gen);
        auto a = g.constant(va), b = g.constant(vb);
        CHECK((a + b).value() == Tensor<double>(va + vb));
        CHECK((a - b).value() == Tensor<double>(va - vb));
        CHECK((a * b).value() == Tensor<double>(va * vb));
        CHECK((a / b).value() == Tensor<double>(va / vb));
    }
}

TEST_CASE("tanh and sigmoid stay finite and exact at extreme inputs") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{-1000.0, -30.0, 30.0, 1000.0});
    auto t = xgrad::tanh(x);
    auto s = xgrad::sigmoid(x);
    CHECK(close(t.value(), Tensor<double>{-1.0, -1.0, 1.0, 1.0}));
    CHECK(close(s.value(), Tensor<double>{0.0, std::exp(-30.0) / (1 + std::exp(-30.0)), 1.0 / (1 + std::exp(-30.0)), 1.0}));
    xgrad::sum(t + s).backward();
    CHECK(xt::all(xt::isfinite(x.grad())));
    Graph<float> gf;
    auto xf = gf.variable(Tensor<float>{-1000.0f, -100.0f, 100.0f});
    auto tf = xgrad::tanh(xf);
    CHECK(xt::all(xt::isfinite(tf.value())));
    CHECK(tf.value()(0) == -1.0f);
    xgrad::sum(tf).backward();
    CHECK(xt::all(xt::isfinite(xf.grad())));
}

TEST_CASE("reductions, softmax and losses by hand") {
    Graph<double> g;
    auto a = g.constant(Tensor<double>{{1.0, 5.0, 3.0}, {4.0, 2.0, 6.0}});
    CHECK(xgrad::sum(a).item() == 21.0);
    CHECK(xgrad::mean(a).item() == 3.5);
    CHECK(close(xgrad::sum(a, {0}).value(), Tensor<double>{5.0, 7.0, 9.0}));
    CHECK(close(xgrad::sum(a, {1}, true).value(), column({9.0, 12.0})));
    CHECK(close(xgrad::mean(a, {-1}).value(), Tensor<double>{3.0, 4.0}));
    CHECK(close(xgrad::max(a, 1).value(), Tensor<double>{5.0, 6.0}));
    CHECK(close(xgrad::max(a, 0, true).value(), Tensor<double>{{4.0, 5.0, 6.0}}));
    auto z = g.constant(Tensor<double>{0.0, std::log(3.0)});
    CHECK(close(xgrad::softmax(z, 0).value(), Tensor<double>{0.25, 0.75}));
    CHECK(close(xgrad::log_softmax(z, 0).value(), Tensor<double>{std::log(0.25), std::log(0.75)}));
    // Huge logits do not overflow.
    auto big = g.constant(Tensor<double>{1000.0, 1000.0});
    CHECK(close(xgrad::softmax(big, 0).value(), Tensor<double>{0.5, 0.5}));

    auto logits = g.constant(Tensor<double>{{0.0, std::log(3.0)}, {std::log(4.0), 0.0}});
    Indices targets = {1, 1};
    // -(log 0.75 + log 0.2) / 2
    CHECK(xgrad::cross_entropy(logits, targets).item() == doctest::Approx(-(std::log(0.75) + std::log(0.2)) / 2));
    xgrad::CrossEntropyOptions ignore;
    ignore.ignore_index(1);
    CHECK(xgrad::cross_entropy(logits, Indices{0, 1}, ignore).item() == doctest::Approx(-std::log(0.25)));
    CHECK(std::isnan(xgrad::cross_entropy(logits, Indices{1, 1}, ignore).item()));  // nothing counted: NaN, as PyTorch
    Tensor<double> mask = {0.0, 1.0};
    CHECK(xgrad::cross_entropy(logits, targets, {}, mask).item() == doctest::Approx(-std::log(0.2)));
    // A mask weighing nothing: the mean is NaN and the gradient zero, as PyTorch's for an all-ignored batch.
    auto x = g.variable(logits.value());
    auto nothing = xgrad::cross_entropy(x, targets, {}, Tensor<double>{0.0, 0.0});
    CHECK(std::isnan(nothing.item()));
    nothing.backward();
    CHECK(xt::all(xt::equal(x.grad(), 0.0)));
    CHECK_THROWS_WITH_AS(xgrad::cross_entropy(x, targets, {}, Tensor<double>{-1.0, 1.0}),
                         doctest::Contains("mask value -1 at position 0"), std::invalid_argument);
    CHECK_THROWS_AS(xgrad::cross_entropy(x, targets, {}, Tensor<double>{std::nan(""), 1.0}), std::invalid_argument);
    auto p = g.constant(Tensor<double>{1.0, 2.0});
    auto q = g.constant(Tensor<double>{3.0, 2.0});
    CHECK(xgrad::mse_loss(p, q).item() == 2.0);
}

TEST_CASE("regression and binary losses give PyTorch's values and gradients, masked, for every reduction") {
    const auto f = xgrad::load_safetensors<double>(std::string(XGRAD_FIXTURES_DIR) + "/pytorch_losses.safetensors");
    const auto get = [&](const std::string& key) { return f.tensors.at(key); };
    const Tensor<double> mask = get("mask");
    using Loss = std::function<xgrad::Var<double>(const xgrad::Var<double>&, const xgrad::Var<double>&, xgrad::Reduction)>;
    xgrad::BCEWithLogitsLossOptions<double> with_pos;
    with_pos.pos_weight(get("pos_weight"));
    const std::vector<std::tuple<std::string, std::string, Loss>> cases = {
        {"mse", "x", [&](auto& a, auto& b, auto r) { return xgrad::mse_loss(a, b, {r}, mask); }},
        {"l1", "x", [&](auto& a, auto& b, auto r) { return xgrad::l1_loss(a, b, {r}, mask); }},
        {"smooth_l1", "x", [&](auto& a, auto& b, auto r) { return xgrad::smooth_l1_loss(a, b, xgrad::SmoothL1LossOptions(r).beta(0.5), mask); }},
        {"huber", "x", [&](auto& a, auto& b, auto r) { return xgrad::huber_loss(a, b, xgrad::HuberLossOptions(r).delta(0.7), mask); }},
        {"bce", "logits", [&](auto& a, auto& b, auto r) { return xgrad::binary_cross_entropy_with_logits(a, b, {r}, mask); }},
        {"bce_pos", "logits", [&](auto& a, auto& b, auto r) {
             auto options = with_pos;
             options.reduction(r);
             return xgrad::binary_cross_entropy_with_logits(a, b, options, mask);
         }},
    };
    using R = xgrad::Reduction;
    for (const auto& [name, input, loss] : cases) {
        CAPTURE(name);
        const std::string target = input == "x" ? "y" : "prob";
        for (const auto& [reduction, key] : {std::pair{R::none, ".none"}, std::pair{R::mean, ".mean"}, std::pair{R::sum, ".sum"}}) {
            Graph<double> g;
            auto a = g.variable(get(input)), b = g.variable(get(target));
            auto l = loss(a, b, reduction);
            CHECK(close(l.value(), get(name + key)));
            if (reduction != R::mean) continue;
            l.backward();
            CHECK(close(a.grad(), get(name + ".grad_input")));
            CHECK(close(b.grad(), get(name + ".grad_target")));
        }
    }
}

TEST_CASE("losses: reductions without a mask, a mask of the input's shape, float against double, bad arguments") {
    Graph<double> g;
    auto p = g.variable(Tensor<double>{{1.0, -2.0}, {0.5, 4.0}});
    auto q = g.constant(Tensor<double>{{0.0, 1.0}, {0.5, 1.0}});
    using R = xgrad::Reduction;
    CHECK(xgrad::l1_loss(p, q).item() == doctest::Approx(7.0 / 4));
    CHECK(xgrad::l1_loss(p, q, {R::sum}).item() == doctest::Approx(7.0));
    CHECK(close(xgrad::mse_loss(p, q, {R::none}).value(), Tensor<double>{{1.0, 9.0}, {0.0, 9.0}}));
    // A mask of the input's own shape weighs single elements; a mean over nothing counted is NaN.
    const Tensor<double> one = {{0.0, 1.0}, {0.0, 0.0}};
    CHECK(xgrad::huber_loss(p, q, {}, one).item() == doctest::Approx(3.0 - 0.5));
    CHECK(std::isnan(xgrad::mse_loss(p, q, {}, Tensor<double>{0.0, 0.0}).item()));
    // beta = 0 is the L1 loss; l1's gradient at a tie is 0, as torch's.
    CHECK(xgrad::smooth_l1_loss(p, q, xgrad::SmoothL1LossOptions(R::sum).beta(0.0)).item() == doctest::Approx(7.0));
    auto tie = xgrad::l1_loss(p, q, {R::sum});
    tie.backward();
    CHECK(close(p.grad(), Tensor<double>{{1.0, -1.0}, {0.0, 1.0}}));
    // Float follows double; large logits give finite values and gradients.
    Graph<float> gf;
    auto logits = gf.variable(Tensor<float>{90.0f, -90.0f, 1e30f});
    auto bce = xgrad::binary_cross_entropy_with_logits(logits, gf.constant(Tensor<float>{0.0f, 1.0f, 0.5f}), {R::sum});
    CHECK(bce.item() == doctest::Approx(0.5e30).epsilon(1e-6));
    bce.backward();
    CHECK(xt::all(xt::isfinite(logits.grad())));
    auto each = xgrad::binary_cross_entropy_with_logits(logits, gf.constant(Tensor<float>{0.0f, 1.0f, 0.5f}), {R::none});
    CHECK(each.value()(0) == doctest::Approx(90.0));  // log(1 + e^90), where e^90 overflows a float
    CHECK(each.value()(1) == doctest::Approx(90.0));
    // The mean of more elements than a float counts exactly (2^24): the denominator stays exact.
    Graph<float> big;
    const std::size_t many = (std::size_t{1} << 24) + 4096;
    Tensor<float> ones = Tensor<float>::from_shape({many}), zeros = Tensor<float>::from_shape({many});
    ones.fill(1.0f);
    zeros.fill(0.0f);
    CHECK(xgrad::mse_loss(big.constant(ones), big.constant(zeros)).item() == 1.0f);

    using E = xgrad::ShapeError;
    CHECK_THROWS_WITH_AS(xgrad::l1_loss(p, g.constant(Tensor<double>{1.0})),
                         "l1_loss: input (2, 2) and target (1,) must have the same shape", E);
    CHECK_THROWS_WITH_AS(xgrad::mse_loss(p, q, {}, Tensor<double>{1.0, 1.0, 1.0}),
                         "mse_loss: input (2, 2) needs a mask of its shape or of its leading axes, got (3,)", E);
    CHECK_THROWS_WITH_AS(xgrad::mse_loss(p, q, {}, Tensor<double>{1.0, -1.0}),
                         "mse_loss: mask value -1 at position 1 is not a finite weight >= 0", std::invalid_argument);
    CHECK_THROWS_WITH_AS(xgrad::huber_loss(p, q, xgrad::HuberLossOptions(R::mean).delta(0.0)), "huber_loss: delta must be finite and > 0, got 0",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(xgrad::smooth_l1_loss(p, q, xgrad::SmoothL1LossOptions(R::mean).beta(-1.0)),
                         "smooth_l1_loss: beta must be finite and >= 0, got -1", std::invalid_argument);
    xgrad::BCEWithLogitsLossOptions<double> wrong;
    wrong.pos_weight(Tensor<double>{1.0, 2.0, 3.0});
    CHECK_THROWS_WITH_AS(xgrad::binary_cross_entropy_with_logits(p, q, wrong),
                         "binary_cross_entropy_with_logits: input (2, 2) needs a pos_weight of shape (2,) or (1,), got (3,)", E);
}

TEST_CASE("cross_entropy with reduction none gives each position's weighted loss, 0 where ignored") {
    Graph<double> g;
    auto logits = g.variable(Tensor<double>{{0.0, 1.0, 2.0}, {1.0, 0.0, -1.0}, {0.5, 0.5, 0.5}});
    const Indices targets = {2, 0, -100};
    xgrad::CrossEntropyOptions each;
    each.reduction(xgrad::Reduction::none);
    auto l = xgrad::cross_entropy(logits, targets, each, Tensor<double>{1.0, 2.0, 1.0});
    const double lse0 = std::log(1 + std::exp(1.0) + std::exp(2.0)), lse1 = std::log(std::exp(1.0) + 1 + std::exp(-1.0));
    CHECK(close(l.value(), Tensor<double>{lse0 - 2.0, 2 * (lse1 - 1.0), 0.0}));
    // Summed, the positions' losses are the sum reduction's, and so are the gradients.
    xgrad::sum(l).backward();
    const Tensor<double> grad_each = logits.grad();
    Graph<double> h;
    auto again = h.variable(logits.value());
    xgrad::CrossEntropyOptions summed;
    summed.reduction(xgrad::Reduction::sum);
    xgrad::cross_entropy(again, targets, summed, Tensor<double>{1.0, 2.0, 1.0}).backward();
    CHECK(close(grad_each, again.grad()));
}

TEST_CASE("cross_entropy refuses mask weights whose sum overflows, rather than returning NaN") {
    Graph<float> g;
    auto logits = g.constant(Tensor<float>{{0.0f, 1.0f}, {1.0f, 0.0f}});
    const Indices targets = {1, 0};
    const float big = std::numeric_limits<float>::max() / 2 * 1.5f;  // each finite, their sum is not
    CHECK_THROWS_WITH_AS(xgrad::cross_entropy(logits, targets, {}, Tensor<float>{big, big}),
                         doctest::Contains("cross_entropy: the mask's weights sum to inf, beyond float's range"),
                         std::invalid_argument);
    CHECK_THROWS_AS(xgrad::accuracy(logits, targets, {}, Tensor<float>{big, big}), std::invalid_argument);
    // Large weights whose sum fits still give the weighted mean.
    const float half = std::numeric_limits<float>::max() / 4;
    CHECK(xgrad::cross_entropy(logits, targets, {}, Tensor<float>{half, half}).item() ==
          doctest::Approx(std::log(1 + std::exp(-1.0))));
}

TEST_CASE("argmax, topk and accuracy") {
    Graph<double> g;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto a = g.constant(Tensor<double>{{1.0, 5.0, 5.0, -2.0}, {0.5, nan, 3.0, 9.0}});
    CHECK(xgrad::argmax(a, 1) == Indices{1, 1});  // the first of equal values; NaN ranks highest
    CHECK(xgrad::argmax(a, 0) == Indices{0, 1, 0, 1});
    const Indices kept = xgrad::argmax(a, -1, true);
    CHECK(xgrad::shape_of(kept) == xgrad::Shape{2, 1});
    CHECK(kept(0, 0) == 1);
    CHECK(kept(1, 0) == 1);
    auto top = xgrad::topk(a, 3);
    CHECK(top.indices == Indices{{1, 2, 0}, {1, 3, 2}});
    CHECK(xgrad::select(top.values, 0, 0).value() == Tensor<double>{5.0, 5.0, 1.0});
    auto bottom = xgrad::topk(a, 2, 1, /*largest=*/false);
    CHECK(bottom.indices == Indices{{3, 0}, {0, 2}});  // NaN last
    CHECK(bottom.values.value() == Tensor<double>{{-2.0, 1.0}, {0.5, 3.0}});
    using E = xgrad::ShapeError;
    CHECK_THROWS_WITH_AS(xgrad::topk(a, 5), "topk: k = 5 is not in [1, 4] along axis 1 of shape (2, 4)", E);
    CHECK_THROWS_WITH_AS(xgrad::topk(a, -1), "topk: k = -1 is not in [1, 4] along axis 1 of shape (2, 4)", E);
    auto columns = xgrad::topk(a, 2, 0);  // along the first axis: each column sorted
    CHECK(columns.indices == Indices{{0, 1, 0, 1}, {1, 0, 1, 0}});
    const Tensor<double> cv = columns.values.value();
    CHECK(std::isnan(cv(0, 1)));
    CHECK(cv(0, 0) == 1.0);
    CHECK(cv(0, 2) == 5.0);
    CHECK(cv(0, 3) == 9.0);
    CHECK(xt::view(cv, 1, xt::all()) == Tensor<double>{0.5, 5.0, 3.0, -2.0});
    CHECK_THROWS_WITH_AS(xgrad::argmax(g.constant(Tensor<double>::from_shape({2, 0})), 1),
                         "argmax: axis 1 of shape (2, 0) is empty", E);

    // (2, 3) positions of 4 classes; predictions by row: 1, 0, 3 / 2, 2, 0.
    auto logits = g.constant(Tensor<double>{{{0, 9, 0, 0}, {9, 0, 0, 0}, {0, 0, 0, 9}}, {{0, 0, 9, 0}, {0, 0, 9, 0}, {9, 0, 0, 0}}});
    const Indices targets{{1, 1, 3}, {2, -100, 1}};
    CHECK(xgrad::accuracy(logits, targets) == doctest::Approx(3.0 / 5.0));  // the ignored position does not count
    const Tensor<double> mask{{1.0, 0.0, 1.0}, {3.0, 1.0, 1.0}};
    CHECK(xgrad::accuracy(logits, targets, {}, mask) == doctest::Approx(5.0 / 6.0));  // (1 + 0 + 1 + 3 + 0) / 6
    const Indices other{{1, 1, 3}, {2, 0, 1}};
    CHECK(xgrad::accuracy(logits, other, xgrad::CrossEntropyOptions().ignore_index(1)) == doctest::Approx(2.0 / 3.0));  // targets equal to 1 ignored
    CHECK(std::isnan(xgrad::accuracy(logits, Indices{{-100, -100, -100}, {-100, -100, -100}})));
    CHECK_THROWS_WITH_AS(xgrad::accuracy(logits, targets, xgrad::CrossEntropyOptions().ignore_index(1)), "accuracy: target -100 at position 4 is out of range for 4 classes",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(xgrad::accuracy(logits, Indices{1, 2}),
                         "accuracy: logits (2, 3, 4) (classes last) need targets of shape (2, 3), got (2,)", E);
}

TEST_CASE("negative indices count from the end, as in PyTorch") {
    Graph<double> g;
    auto h = g.variable(Tensor<double>{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});  // (layers, H), as h_n's first axis
    CHECK(xgrad::select(h, 0, -1).value() == xgrad::select(h, 0, 2).value());
    CHECK(xgrad::select(h, -1, -2).value() == Tensor<double>{1.0, 3.0, 5.0});
    CHECK(xgrad::narrow(h, 0, -2, 2).value() == xgrad::narrow(h, 0, 1, 2).value());
    xgrad::sum(xgrad::select(h, 0, -1) * 2.0 + xgrad::narrow(h, 0, -2, 1)).backward();
    CHECK(h.grad() == Tensor<double>{{0.0, 0.0}, {1.0, 1.0}, {2.0, 2.0}});
}

TEST_CASE("shape ops by hand") {
    Graph<double> g;
    auto a = g.constant(Tensor<double>{{1, 2, 3}, {4, 5, 6}});
    CHECK(close(xgrad::transpose(a, 0, 1).value(), Tensor<double>{{1, 4}, {2, 5}, {3, 6}}));
    CHECK(close(xgrad::reshape(a, {3, -1}).value(), Tensor<double>{{1, 2}, {3, 4}, {5, 6}}));
    CHECK(close(xgrad::narrow(a, 1, 1, 2).value(), Tensor<double>{{2, 3}, {5, 6}}));
    CHECK(close(xgrad::select(a, 1, 2).value(), Tensor<double>{3, 6}));
    CHECK(close(xgrad::concat(std::vector{a, a}, 0).value(), Tensor<double>{{1, 2, 3}, {4, 5, 6}, {1, 2, 3}, {4, 5, 6}}));
    CHECK(close(xgrad::stack(std::vector{a, a}, 2).value(),
                Tensor<double>{{{1, 1}, {2, 2}, {3, 3}}, {{4, 4}, {5, 5}, {6, 6}}}));
    auto pieces = xgrad::split(a, std::size_t{2}, 1);
    REQUIRE(pieces.size() == 2);
    CHECK(close(pieces[1].value(), column({3, 6})));
    auto w = g.constant(Tensor<double>{{0, 0}, {1, 1}, {2, 2}});
    CHECK(close(xgrad::embedding(w, Indices{2, 0}).value(), Tensor<double>{{2, 2}, {0, 0}}));
    auto m = xgrad::matmul(a, w);
    CHECK(close(m.value(), Tensor<double>{{8, 8}, {17, 17}}));
    auto lin = xgrad::linear(a, xgrad::transpose(w, 0, 1), g.constant(Tensor<double>{1, -1}));
    CHECK(close(lin.value(), Tensor<double>{{9, 7}, {18, 16}}));
}

TEST_CASE("dropout: seeded, scaled, identity in eval mode") {
    Graph<double> g;
    auto x = g.constant(xt::ones<double>({1000}));
    xgrad::Generator g1(3), g2(3);
    auto d1 = xgrad::dropout(x, 0.25, g1);
    auto d2 = xgrad::dropout(x, 0.25, g2);
    CHECK(d1.value() == d2.value());
    double kept = 0;
    for (double v : d1.value()) {
        CHECK((v == 0.0 || v == doctest::Approx(1.0 / 0.75)));
        kept += v != 0.0;
    }
    CHECK(kept == doctest::Approx(750).epsilon(0.08));
    CHECK(xgrad::dropout(x, 0.25, g1, false).index() == x.index());
    CHECK_THROWS_AS(xgrad::dropout(x, 1.5, g1), std::invalid_argument);
}

TEST_CASE("float results agree with double") {
    xgrad::Generator gen(9);
    Tensor<double> xd = xgrad::uniform<double>({4, 6}, -1, 1, gen);
    Tensor<double> wd = xgrad::uniform<double>({6, 5}, -1, 1, gen);
    Indices targets = {0, 4, 2, 2};
    auto run = [&](auto zero) {
        using T = decltype(zero);
        Graph<T> g;
        auto x = g.variable(Tensor<T>(xt::cast<T>(xd)));
        auto w = g.variable(Tensor<T>(xt::cast<T>(wd)));
        auto h = xgrad::tanh(xgrad::matmul(x, w));
        auto loss = xgrad::cross_entropy(xgrad::softmax(h, -1) * T(3) + xgrad::sigmoid(h), targets);
        loss.backward();
        return std::tuple{static_cast<double>(loss.item()), Tensor<double>(xt::cast<double>(x.grad())),
                          Tensor<double>(xt::cast<double>(w.grad()))};
    };
    auto [lf, gxf, gwf] = run(0.0f);
    auto [ld, gxd, gwd] = run(0.0);
    CHECK(lf == doctest::Approx(ld).epsilon(1e-5));
    CHECK(xt::allclose(gxf, gxd, 1e-4, 1e-5));
    CHECK(xt::allclose(gwf, gwd, 1e-4, 1e-5));
}

TEST_CASE("every shape error names the op and the shapes") {
    Graph<double> g;
    auto a = g.constant(xt::zeros<double>({2, 3}));
    auto b = g.constant(xt::zeros<double>({4}));
    auto c3 = g.constant(xt::zeros<double>({2, 3, 4}));
    using E = xgrad::ShapeError;
    CHECK_THROWS_WITH_AS(a + b, "add: shapes (2, 3) and (4,) cannot be broadcast together", E);
    CHECK_THROWS_WITH_AS(a - b, doctest::Contains("sub: shapes (2, 3) and (4,)"), E);
    CHECK_THROWS_WITH_AS(a * b, doctest::Contains("mul: shapes (2, 3) and (4,)"), E);
    CHECK_THROWS_WITH_AS(a / b, doctest::Contains("div: shapes (2, 3) and (4,)"), E);
    CHECK_THROWS_WITH_AS(xgrad::pow(a, b), doctest::Contains("pow: shapes (2, 3) and (4,)"), E);
    CHECK_THROWS_WITH_AS(xgrad::where(xt::xarray<bool>{true, false, true, false}, a, a),
                         doctest::Contains("where: shapes (4,) and (2, 3)"), E);
    CHECK_THROWS_WITH_AS(xgrad::matmul(a, a), "matmul: cannot multiply shapes (2, 3) and (2, 3)", E);
    CHECK_THROWS_WITH_AS(xgrad::matmul(b, a), "matmul: cannot multiply shapes (4,) and (2, 3)", E);
    auto w32 = g.constant(xt::zeros<double>({3, 2}));
    CHECK_THROWS_WITH_AS(xgrad::linear(a, w32), doctest::Contains("linear: input (2, 3) does not fit weight (3, 2) and bias none"), E);
    CHECK_THROWS_WITH_AS(xgrad::linear(a, a, b), doctest::Contains("linear: input (2, 3) does not fit weight (2, 3) and bias (4,)"), E);
    CHECK_THROWS_WITH_AS(xgrad::transpose(a, 0, 2), doctest::Contains("transpose: axis 2"), E);
    CHECK_THROWS_WITH_AS(xgrad::permute(c3, {0, 0, 1}), doctest::Contains("permute: dims [0, 0, 1]"), E);
    CHECK_THROWS_WITH_AS(xgrad::permute(c3, {0, 0, 1}), doctest::Contains("(2, 3, 4)"), E);
    CHECK_THROWS_WITH_AS(xgrad::reshape(a, {4, -1}), "reshape: cannot reshape (2, 3) (6 elements) to [4, -1]", E);
    CHECK_THROWS_WITH_AS(xgrad::reshape(a, {5}), doctest::Contains("reshape: cannot reshape (2, 3)"), E);
    CHECK_THROWS_WITH_AS(xgrad::concat(std::vector{a, c3}, 0),
                         "concat: shapes (2, 3), (2, 3, 4) do not match outside axis 0", E);
    CHECK_THROWS_WITH_AS(xgrad::stack(std::vector{a, b}, 0), "stack: shapes (2, 3), (4,) are not all equal", E);
    CHECK_THROWS_WITH_AS(xgrad::narrow(a, 1, 2, 2),
                         "narrow: elements [2, 4) along axis 1 are out of range for shape (2, 3)", E);
    CHECK_THROWS_WITH_AS(xgrad::select(a, 0, 2), "select: index 2 is out of range along axis 0 of shape (2, 3)", E);
    CHECK_THROWS_WITH_AS(xgrad::select(a, 0, -3), "select: index -3 is out of range along axis 0 of shape (2, 3)", E);
    CHECK_THROWS_WITH_AS(xgrad::narrow(a, 1, -4, 1), "narrow: start -4 is out of range along axis 1 of shape (2, 3)", E);
    CHECK_THROWS_WITH_AS(xgrad::narrow(a, 1, -1, 2),
                         "narrow: elements [2, 4) along axis 1 are out of range for shape (2, 3)", E);
    CHECK_THROWS_WITH_AS(xgrad::split(a, std::vector<std::size_t>{1, 1}, 1),
                         doctest::Contains("split: sizes [1, 1] do not add up to 3, the length of axis 1 of shape (2, 3)"), E);
    CHECK_THROWS_WITH_AS(xgrad::sum(a, {0, 0}), doctest::Contains("sum: axes [0, 0] repeat an axis"), E);
    CHECK_THROWS_WITH_AS(xgrad::mean(a, {2}), doctest::Contains("mean: axis 2 is out of range for a tensor of rank 2"), E);
    CHECK_THROWS_WITH_AS(xgrad::max(a, 5), doctest::Contains("max: axis 5"), E);
    CHECK_THROWS_WITH_AS(xgrad::softmax(a, -3), doctest::Contains("softmax: axis -3"), E);
    CHECK_THROWS_WITH_AS(xgrad::log_softmax(a, 2), doctest::Contains("log_softmax: axis 2"), E);
    CHECK_THROWS_WITH_AS(xgrad::cross_entropy(a, Indices{0, 1, 2}),
                         "cross_entropy: logits (2, 3) (classes last) need targets of shape (2,), got (3,)", E);
    CHECK_THROWS_WITH_AS(xgrad::cross_entropy(a, Indices{0, 1}, {}, Tensor<double>{1.0}),
                         "cross_entropy: logits (2, 3) need a mask of shape (2,), got (1,)", E);
    CHECK_THROWS_WITH_AS(xgrad::cross_entropy(a, Indices{0, 7}),
                         "cross_entropy: target 7 at position 1 is out of range for 3 classes", std::invalid_argument);
    CHECK_THROWS_WITH_AS(xgrad::mse_loss(a, b), "mse_loss: input (2, 3) and target (4,) must have the same shape", E);
    CHECK_THROWS_WITH_AS(xgrad::embedding(b, Indices{0}),
                         "embedding: weight must be 2-D (num_embeddings, dim), got (4,)", E);
    CHECK_THROWS_WITH_AS(xgrad::embedding(a, Indices{0, 2}),
                         "embedding: index 2 at position 1 is out of range for weight (2, 3)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(xgrad::clamp(a, 1.0, -1.0), "clamp: lo (1) must not exceed hi (-1)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(a.item(), "item: expected one element, got shape (2, 3)", E);
}
