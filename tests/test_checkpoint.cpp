// xgrad::checkpoint: the same values and gradients as the block run plainly, for inputs and the
// parameters it reads, with dropout replayed, and a gradcheck of the op itself.
#include <cmath>
#include <vector>

#include <doctest/doctest.h>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

using xgrad::Graph;
using xgrad::Tensor;
using xgrad::Var;

namespace {
bool same(const Tensor<double>& a, const Tensor<double>& b, double tol = 1e-12) {
    return a.shape() == b.shape() && xt::amax(xt::abs(a - b))() <= tol;
}
}  // namespace

TEST_CASE("checkpoint passes gradcheck, for a block with two outputs") {
    xgrad::Generator gen(5);
    const std::vector<Tensor<double>> values{xgrad::uniform<double>({3, 4}, -1, 1, gen), xgrad::uniform<double>({4, 2}, -1, 1, gen)};
    auto block = [](const std::vector<Var<double>>& in) {
        return std::vector<Var<double>>{xgrad::tanh(xgrad::matmul(in[0], in[1])), xgrad::sigmoid(in[0]) * in[0]};
    };
    auto report = xgrad::gradcheck(
        [&](const std::vector<Var<double>>& v) {
            const auto out = xgrad::checkpoint<double>(block, v);
            return xgrad::sum(out[0] * out[0]) + xgrad::sum(out[1] * xgrad::exp(out[1]));
        },
        values);
    CAPTURE(report.summary());
    CHECK(report.passed);
}

TEST_CASE("checkpoint gives the plain run's gradients: inputs, parameters, replayed dropout, any subset of outputs used") {
    xgrad::Generator init(7);
    xgrad::nn::Linear<double> inner(4, 5, true, init), outer(5, 3, true, init);
    const Tensor<double> x0 = xgrad::uniform<double>({6, 4}, -1, 1, init);
    xgrad::Generator dropout_gen(11);
    // h = dropout(tanh(inner(x))); returns h and outer(h): the parameters of both layers are read.
    auto block = [&](const std::vector<Var<double>>& in) {
        const Var<double> h = xgrad::dropout(xgrad::tanh(inner.forward(in[0])), 0.5, dropout_gen);
        return std::vector<Var<double>>{h, outer.forward(h)};
    };
    for (int used : {0, 1, 2}) {  // loss on the first output, the second, or both
        for (bool x_needs_grad : {true, false}) {
            CAPTURE(used);
            CAPTURE(x_needs_grad);
            std::vector<Tensor<double>> grads[2];
            Tensor<double> dx[2], loss_values[2];
            for (int run = 0; run < 2; ++run) {
                inner.zero_grad();
                outer.zero_grad();
                dropout_gen = xgrad::Generator(11);
                Graph<double> g;
                const Var<double> x = x_needs_grad ? g.variable(x0) : g.constant(x0);
                const std::vector<Var<double>> out = run == 0 ? block({x}) : xgrad::checkpoint<double>(block, {x}, {&dropout_gen});
                Var<double> loss = used == 1 ? xgrad::sum(out[1] * out[1]) : xgrad::sum(xgrad::exp(out[0]));
                if (used == 2) loss = loss + xgrad::sum(out[1] * out[1]);
                loss.backward();
                loss_values[run] = loss.value();
                for (const auto& p : inner.parameters()) grads[run].push_back(p.grad());
                for (const auto& p : outer.parameters()) grads[run].push_back(p.grad());
                if (x_needs_grad) dx[run] = x.grad();
            }
            CHECK(same(loss_values[0], loss_values[1]));
            for (std::size_t i = 0; i < grads[0].size(); ++i) {
                CAPTURE(i);
                CHECK(same(grads[0][i], grads[1][i]));
            }
            if (x_needs_grad) CHECK(same(dx[0], dx[1]));
            if (used != 0) CHECK(xt::amax(xt::abs(grads[1].back()))() > 0);  // outer's bias: reached only through output 1
        }
    }
}

TEST_CASE("checkpoint refuses what it cannot recompute, in one line") {
    Graph<double> g;
    const Var<double> x = g.variable(Tensor<double>{1.0, 2.0});
    auto identity = [](const std::vector<Var<double>>& in) { return in; };
    CHECK_THROWS_WITH_AS(xgrad::checkpoint<double>(identity, {}), "checkpoint: needs at least one input (the outputs go on its tape)",
                         xgrad::GraphError);
    auto nothing = [](const std::vector<Var<double>>&) { return std::vector<Var<double>>{}; };
    CHECK_THROWS_WITH_AS(xgrad::checkpoint<double>(nothing, {x}), "checkpoint: the function returned no outputs", xgrad::GraphError);
    int calls = 0;  // a block that is not a function of its inputs: the second run changes shape
    auto changing = [&](const std::vector<Var<double>>& in) {
        return std::vector<Var<double>>{++calls == 1 ? in[0] * 2.0 : xgrad::sum(in[0])};
    };
    const Var<double> y = xgrad::checkpoint<double>(changing, {x})[0];
    CHECK_THROWS_WITH_AS(xgrad::sum(y).backward(), "checkpoint: the recomputation gave output 0 the shape (), the first run (2,)",
                         xgrad::GraphError);
}
