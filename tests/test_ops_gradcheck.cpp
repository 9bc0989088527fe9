// Every op's gradient against central differences in double (eps 1e-6, atol 1e-5, rtol 1e-3),
// over random shapes including broadcasting, size-1 and 0-d cases.
#include <doctest/doctest.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

using xgrad::Indices;
using xgrad::Shape;
using xgrad::Graph;
using xgrad::Tensor;
using V = xgrad::Var<double>;
using Vs = std::vector<V>;

namespace {
xgrad::Generator gen(2024);

Tensor<double> rnd(const Shape& s, double lo = -1.0, double hi = 1.0) { return xgrad::uniform<double>(s, lo, hi, gen); }

// Values whose magnitude stays in [lo, hi], with random signs: away from kinks at 0.
Tensor<double> away_from_zero(const Shape& s, double lo = 0.2, double hi = 1.0) {
    Tensor<double> m = rnd(s, lo, hi);
    for (double& x : m) x *= gen.uniform01() < 0.5 ? -1.0 : 1.0;
    return m;
}

void expect_gradients(const xgrad::GradcheckFn& f, const std::vector<Tensor<double>>& inputs) {
    xgrad::GradcheckReport report = xgrad::gradcheck(f, inputs);
    INFO(report.summary());
    CHECK(report.passed);
}

// Shapes for binary ops: equal, broadcast on either side (over leading axes, as a bias is), size 1, 0-d.
const std::vector<std::pair<Shape, Shape>> binary_shapes = {
    {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 3, 4}, {1, 4}}, {{2, 1, 4}, {3, 1}}, {{}, {2, 3}}, {{1}, {1}}, {{5, 1}, {1, 5}},
    {{}, {}}};
const std::vector<Shape> unary_shapes = {{}, {1}, {7}, {3, 4}, {2, 3, 2}};
}  // namespace

TEST_CASE("gradcheck itself catches a wrong backward") {
    // y = x^2 with a backward that forgets the factor 2.
    auto wrong_square = [](const Vs& v) {
        Tensor<double> y = v[0].value() * v[0].value();
        return v[0].tape().record("wrong_square", std::move(y), {v[0]}, [](xgrad::BackwardContext<double>& c) {
            c.accumulate(0, c.output_grad() * c.input(0));
        });
    };
    xgrad::GradcheckReport report = xgrad::gradcheck(wrong_square, {rnd({3}, 0.5, 1.0)});
    CHECK_FALSE(report.passed);
    CHECK_FALSE(report.inputs[0].passed);
    CHECK(report.inputs[0].max_abs_error > 0.4);
    CHECK(report.summary().find("FAIL") != std::string::npos);
}

TEST_CASE("binary elementwise ops with broadcasting") {
    for (const auto& [sa, sb] : binary_shapes) {
        CAPTURE(xgrad::shape_str(sa));
        CAPTURE(xgrad::shape_str(sb));
        expect_gradients([](const Vs& v) { return v[0] + v[1]; }, {rnd(sa), rnd(sb)});
        expect_gradients([](const Vs& v) { return v[0] - v[1]; }, {rnd(sa), rnd(sb)});
        expect_gradients([](const Vs& v) { return v[0] * v[1]; }, {rnd(sa), rnd(sb)});
        expect_gradients([](const Vs& v) { return v[0] / v[1]; }, {rnd(sa), away_from_zero(sb, 0.5, 2.0)});
        expect_gradients([](const Vs& v) { return xgrad::pow(v[0], v[1]); }, {rnd(sa, 0.5, 2.0), rnd(sb)});
        xt::xarray<bool> mask = rnd(sa) > 0.0;
        expect_gradients([mask](const Vs& v) { return xgrad::where(mask, v[0], v[1]); }, {rnd(sa), rnd(sb)});
    }
}

TEST_CASE("scalar forms and operators") {
    for (const Shape& s : unary_shapes) {
        CAPTURE(xgrad::shape_str(s));
        expect_gradients([](const Vs& v) { return v[0] + 2.5; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return 2.5 + v[0]; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return v[0] - 1.5; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return 1.5 - v[0]; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return v[0] * -3.0; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return -3.0 * v[0]; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return v[0] / 4.0; }, {rnd(s)});
        expect_gradients([](const Vs& v) { return 2.0 / v[0]; }, {away_from_zero(s, 0.5, 2.0)});
        expect_gradients([](const Vs& v) { return -v[0]; }, {rnd(s)});
    }
}

TEST_CASE("unary math ops") {
    for (const Shape& s : unary_shapes) {
        CAPTURE(xgrad::shape_str(s));
        expect_gradients([](const Vs& v) { return xgrad::exp(v[0]); }, {rnd(s)});
        expect_gradients([](const Vs& v) { return xgrad::log(v[0]); }, {rnd(s, 0.5, 2.0)});
        expect_gradients([](const Vs& v) { return xgrad::pow(v[0], 3.0); }, {rnd(s)});
        expect_gradients([](const Vs& v) { return xgrad::pow(v[0], -1.5); }, {rnd(s, 0.5, 2.0)});
        expect_gradients([](const Vs& v) { return xgrad::sqrt(v[0]); }, {rnd(s, 0.5, 2.0)});
        expect_gradients([](const Vs& v) { return xgrad::abs(v[0]); }, {away_from_zero(s)});
        expect_gradients([](const Vs& v) { return xgrad::tanh(v[0]); }, {rnd(s, -3.0, 3.0)});
        expect_gradients([](const Vs& v) { return xgrad::sigmoid(v[0]); }, {rnd(s, -5.0, 5.0)});
        expect_gradients([](const Vs& v) { return xgrad::relu(v[0]); }, {away_from_zero(s)});
        expect_gradients([](const Vs& v) { return xgrad::clamp(v[0], -0.5, 0.5); }, {away_from_zero(s, 0.1, 0.4)});
        expect_gradients([](const Vs& v) { return xgrad::clamp(v[0], -0.5, 0.5); }, {away_from_zero(s, 0.6, 1.0)});
    }
}

TEST_CASE("matmul: 2-D, batched 3-D, 3-D by 2-D, and size-1 dimensions") {
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({3, 4}), rnd({4, 2})});
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({1, 1}), rnd({1, 1})});
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({1, 3}), rnd({3, 1})});
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({2, 3, 4}), rnd({2, 4, 5})});
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({2, 3, 4}), rnd({4, 5})});
    // The same input on both sides accumulates both contributions.
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[0]); }, {rnd({3, 3})});
}

TEST_CASE("linear: x Wᵀ + b over 2-D and 3-D inputs, with and without bias") {
    expect_gradients([](const Vs& v) { return xgrad::linear(v[0], v[1], v[2]); }, {rnd({3, 4}), rnd({5, 4}), rnd({5})});
    expect_gradients([](const Vs& v) { return xgrad::linear(v[0], v[1], v[2]); },
                     {rnd({2, 3, 4}), rnd({5, 4}), rnd({5})});
    expect_gradients([](const Vs& v) { return xgrad::linear(v[0], v[1]); }, {rnd({3, 4}), rnd({2, 4})});
    expect_gradients([](const Vs& v) { return xgrad::linear(v[0], v[1]); }, {rnd({4}), rnd({1, 4})});
}

TEST_CASE("shape ops") {
    expect_gradients([](const Vs& v) { return xgrad::transpose(v[0], 0, 1); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::transpose(v[0], -1, 0); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::permute(v[0], {2, 0, 1}); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::reshape(v[0], {4, -1}); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::reshape(v[0], {}); }, {rnd({1, 1})});
    expect_gradients([](const Vs& v) { return xgrad::concat(Vs{v[0], v[1], v[2]}, 1); },
                     {rnd({2, 1, 3}), rnd({2, 4, 3}), rnd({2, 2, 3})});
    expect_gradients([](const Vs& v) { return xgrad::concat(Vs{v[0], v[0] * 2.0}, -1); }, {rnd({2, 3})});
    // Braced lists, as torch.cat({a, b}, -1), without naming the vector type.
    expect_gradients([](const Vs& v) { return xgrad::concat({v[0], v[1]}, -1); }, {rnd({2, 3}), rnd({2, 2})});
    expect_gradients([](const Vs& v) { return xgrad::stack({v[1], v[0]}, 1); }, {rnd({2, 3}), rnd({2, 3})});
    expect_gradients([](const Vs& v) { return xgrad::stack(Vs{v[0], v[1]}, 0); }, {rnd({2, 3}), rnd({2, 3})});
    expect_gradients([](const Vs& v) { return xgrad::stack(Vs{v[0], v[1], v[0]}, 2); }, {rnd({2, 3}), rnd({2, 3})});
    expect_gradients([](const Vs& v) { return xgrad::stack(Vs{v[0], v[1]}, 0); }, {rnd({}), rnd({})});
    expect_gradients([](const Vs& v) { return xgrad::narrow(v[0], 1, 1, 2); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::narrow(v[0], -1, 0, 1); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::select(v[0], 0, 2) * xgrad::select(v[0], 0, 0); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::select(v[0], 1, 1); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) {
        auto p = xgrad::split(v[0], std::vector<std::size_t>{1, 3}, 1);
        return xgrad::concat(Vs{p[1] * 2.0, p[0]}, 1);
    }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) {
        auto p = xgrad::split(v[0], std::size_t{2}, 0);  // pieces of 2, 2, 1
        return xgrad::concat(Vs{p[2], p[0] * p[1]}, 0);
    }, {rnd({5, 2})});
}

TEST_CASE("reductions") {
    for (const Shape& s : unary_shapes) {
        CAPTURE(xgrad::shape_str(s));
        expect_gradients([](const Vs& v) { return xgrad::sum(v[0]); }, {rnd(s)});
        expect_gradients([](const Vs& v) { return xgrad::mean(v[0]); }, {rnd(s)});
    }
    expect_gradients([](const Vs& v) { return xgrad::sum(v[0], {1}); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::sum(v[0], {0, 2}, true); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::sum(v[0], {-1}, false); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::mean(v[0], {0}); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::mean(v[0], {1, 2}, true); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::max(v[0], 1); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::max(v[0], 0, true); }, {rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::max(v[0], -1); }, {rnd({2, 3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::max(v[0], 0); }, {rnd({1})});
    expect_gradients([](const Vs& v) { return xgrad::topk(v[0], 2).values; }, {rnd({3, 5})});
    expect_gradients([](const Vs& v) { return xgrad::topk(v[0], 3, 0, false).values; }, {rnd({4, 2, 3})});
    expect_gradients([](const Vs& v) { return xgrad::topk(v[0], 4, 1).values; }, {rnd({2, 4})});
}

TEST_CASE("softmax and log_softmax along every axis") {
    for (std::ptrdiff_t axis : {0, 1, 2, -1}) {
        CAPTURE(axis);
        expect_gradients([axis](const Vs& v) { return xgrad::softmax(v[0], axis); }, {rnd({2, 3, 4}, -3, 3)});
        expect_gradients([axis](const Vs& v) { return xgrad::log_softmax(v[0], axis); }, {rnd({2, 3, 4}, -3, 3)});
    }
    expect_gradients([](const Vs& v) { return xgrad::softmax(v[0], 0); }, {rnd({1})});
    expect_gradients([](const Vs& v) { return xgrad::log_softmax(v[0], 0); }, {rnd({5})});
}

TEST_CASE("losses") {
    Indices targets = {0, 3, 1, 4};
    expect_gradients([targets](const Vs& v) { return xgrad::cross_entropy(v[0], targets); }, {rnd({4, 5}, -2, 2)});
    xgrad::CrossEntropyOptions ignore;
    ignore.ignore_index(3);
    expect_gradients([targets, ignore](const Vs& v) { return xgrad::cross_entropy(v[0], targets, ignore); },
                     {rnd({4, 5}, -2, 2)});
    Tensor<double> mask = {1.0, 0.0, 0.5, 1.0};
    expect_gradients([targets, mask](const Vs& v) { return xgrad::cross_entropy(v[0], targets, {}, mask); },
                     {rnd({4, 5}, -2, 2)});
    xgrad::CrossEntropyOptions summed;
    summed.reduction(xgrad::CrossEntropyOptions::Reduction::sum);
    expect_gradients([targets, summed](const Vs& v) { return xgrad::cross_entropy(v[0], targets, summed); },
                     {rnd({4, 5}, -2, 2)});
    Indices targets3 = {{0, 2, 1}, {4, 4, 0}};
    expect_gradients([targets3](const Vs& v) { return xgrad::cross_entropy(v[0], targets3); }, {rnd({2, 3, 5}, -2, 2)});
    xgrad::CrossEntropyOptions each;  // per position: the full Jacobian, one row per position
    each.reduction(xgrad::Reduction::none);
    expect_gradients([targets3, each](const Vs& v) { return xgrad::cross_entropy(v[0], targets3, each); }, {rnd({2, 3, 5}, -2, 2)});
    expect_gradients([](const Vs& v) { return xgrad::mse_loss(v[0], v[1]); }, {rnd({3, 4}), rnd({3, 4})});
    expect_gradients([](const Vs& v) { return xgrad::mse_loss(v[0], v[1]); }, {rnd({}), rnd({})});
}

TEST_CASE("regression and binary losses: every reduction, masked by position and by element") {
    using R = xgrad::Reduction;
    const Tensor<double> by_position = rnd({2, 3}, 0.0, 2.0), by_element = rnd({2, 3, 4}, 0.0, 2.0);
    const Tensor<double> pos_weight = rnd({4}, 0.5, 3.0);
    // Differences |d| in [0.3, 1.2]: away from 0, where l1's slope jumps, and on both sides of beta and
    // delta (smooth_l1 and huber have continuous slopes there).
    const Tensor<double> target = rnd({2, 3, 4});
    const Tensor<double> input = target + away_from_zero({2, 3, 4}, 0.3, 1.2);
    const Tensor<double> logits = rnd({2, 3, 4}, -4, 4), prob = rnd({2, 3, 4}, 0, 1);
    for (R r : {R::none, R::mean, R::sum}) {
        CAPTURE(static_cast<int>(r));
        for (const auto& mask : {std::optional<Tensor<double>>(), std::optional(by_position), std::optional(by_element)}) {
            expect_gradients([r, mask](const Vs& v) { return xgrad::mse_loss(v[0], v[1], {r}, mask); }, {input, target});
            expect_gradients([r, mask](const Vs& v) { return xgrad::l1_loss(v[0], v[1], {r}, mask); }, {input, target});
            expect_gradients([r, mask](const Vs& v) { return xgrad::smooth_l1_loss(v[0], v[1], xgrad::SmoothL1LossOptions(r).beta(0.5), mask); },
                             {input, target});
            expect_gradients([r, mask](const Vs& v) { return xgrad::huber_loss(v[0], v[1], xgrad::HuberLossOptions(r).delta(0.8), mask); }, {input, target});
            const auto options = xgrad::BCEWithLogitsLossOptions<double>(r).pos_weight(pos_weight);
            expect_gradients([options, mask](const Vs& v) { return xgrad::binary_cross_entropy_with_logits(v[0], v[1], options, mask); },
                             {logits, prob});
        }
    }
}

TEST_CASE("embedding gathers rows and scatter-adds repeated ones") {
    Indices ids = {{0, 4, 4}, {2, 0, 1}};
    expect_gradients([ids](const Vs& v) { return xgrad::embedding(v[0], ids); }, {rnd({5, 3})});
    Indices scalar_id = Indices(3);
    expect_gradients([scalar_id](const Vs& v) { return xgrad::embedding(v[0], scalar_id); }, {rnd({5, 3})});
}

TEST_CASE("size-0 dimensions") {
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({2, 0}), rnd({0, 3})});
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({2, 3, 0}), rnd({2, 0, 4})});
    expect_gradients([](const Vs& v) { return xgrad::matmul(v[0], v[1]); }, {rnd({2, 3, 0}), rnd({0, 4})});
    expect_gradients([](const Vs& v) { return xgrad::linear(v[0], v[1], v[2]); }, {rnd({5, 0}), rnd({3, 0}), rnd({3})});
    expect_gradients([](const Vs& v) { return xgrad::concat(Vs{v[0], v[1]}, 1); }, {rnd({0, 3}), rnd({0, 2})});
    expect_gradients([](const Vs& v) { return xgrad::concat(Vs{v[0], v[1]}, 0); }, {rnd({0, 3}), rnd({2, 3})});
    expect_gradients([](const Vs& v) { return xgrad::sum(v[0], {1}); }, {rnd({3, 0})});
    expect_gradients([](const Vs& v) { return xgrad::narrow(v[0], 0, 1, 0) + 1.0; }, {rnd({3, 2})});
    expect_gradients([](const Vs& v) { return xgrad::exp(v[0]); }, {rnd({0})});
}

TEST_CASE("pow at a zero base has finite gradients, as PyTorch") {
    Tensor<double> base = {0.0, 0.0, 2.0};
    Graph<double> g;
    auto a = g.variable(base);
    auto b = g.variable(Tensor<double>{2.0, 0.0, 1.5});
    xgrad::sum(xgrad::pow(a, b) + xgrad::pow(a, 0.0)).backward();
    CHECK(xt::all(xt::isfinite(a.grad())));
    CHECK(xt::all(xt::isfinite(b.grad())));
    CHECK(b.grad()(0) == 0.0);
}

TEST_CASE("dropout with a fixed mask") {
    expect_gradients([](const Vs& v) {
        xgrad::Generator g(5);  // the same mask on every call
        return xgrad::dropout(v[0], 0.3, g);
    }, {rnd({4, 6})});
}

TEST_CASE("a composite: a tanh RNN step with a softmax readout") {
    expect_gradients([](const Vs& v) {
        auto h = xgrad::tanh(xgrad::matmul(v[0], v[1]) + xgrad::matmul(v[2], v[3]) + v[4]);
        return xgrad::log_softmax(xgrad::matmul(h, v[5]), -1);
    }, {rnd({2, 3}), rnd({3, 4}), rnd({2, 4}), rnd({4, 4}), rnd({4}), rnd({4, 3})});
}
