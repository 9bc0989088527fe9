// The tape: accumulation, parameters, grad mode, detach, retain_graph, released and cleared
// graphs, depth, and memory.
#include <pthread.h>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

#include "heap_growth.hpp"

using xgrad::Graph;
using xgrad::Tensor;
using xgrad::Var;

TEST_CASE("a value used twice receives both gradient contributions") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{1.0, 2.0, 3.0});
    auto y = xgrad::sum(x * x + x);  // dy/dx = 2x + 1
    y.backward();
    CHECK(x.grad() == Tensor<double>{3.0, 5.0, 7.0});
}

TEST_CASE("leaf gradients accumulate across backward passes, and non-leaf ones do not") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{2.0});
    auto h = x * 3.0;
    h.retain_grad();
    auto y = xgrad::sum(h * h);  // dy/dh = 2h = 12, dy/dx = 36
    y.backward(/*retain_graph=*/true);
    CHECK(x.grad()(0) == doctest::Approx(36.0));
    CHECK(h.grad()(0) == doctest::Approx(12.0));
    y.backward();
    CHECK(x.grad()(0) == doctest::Approx(72.0));
    CHECK(h.grad()(0) == doctest::Approx(12.0));
}

TEST_CASE("non-leaf gradients are freed unless retained") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{2.0});
    auto h = x * 3.0;
    xgrad::sum(h).backward();
    CHECK_FALSE(h.has_grad());
    CHECK_THROWS_AS(h.grad(), xgrad::GraphError);
}

TEST_CASE("parameters outlive graphs and receive accumulated gradients") {
    xgrad::Parameter<double> w(Tensor<double>{{1.0, 2.0}});
    for (int step = 0; step < 2; ++step) {
        Graph<double> g;
        auto wv = g.parameter(w);
        CHECK(g.parameter(w).index() == wv.index());  // recorded once per graph
        auto y = xgrad::sum(wv * wv);
        y.backward();
    }
    CHECK(w.grad() == Tensor<double>{{4.0, 8.0}});  // 2 * 2w
    w.zero_grad();
    CHECK(w.grad() == Tensor<double>{{0.0, 0.0}});
}

TEST_CASE("a parameter first used under no_grad still receives its gradient later in the same graph") {
    xgrad::Parameter<double> w(Tensor<double>{3.0});
    Graph<double> g;
    xgrad::Var<double> cached;
    {
        xgrad::NoGradGuard guard;
        cached = g.parameter(w);
        CHECK_FALSE(xgrad::exp(cached).requires_grad());
    }
    CHECK(g.parameter(w).index() == cached.index());
    xgrad::sum(cached * cached).backward();
    CHECK(w.grad()(0) == doctest::Approx(6.0));
}

TEST_CASE("retain_graph: a second backward adds into parameters again") {
    xgrad::Parameter<double> w(Tensor<double>{2.0});
    Graph<double> g;
    auto y = xgrad::sum(xgrad::pow(g.parameter(w), 3.0));  // dy/dw = 3 w^2 = 12
    y.backward(true);
    y.backward();
    CHECK(w.grad()(0) == doctest::Approx(24.0));
}

TEST_CASE("a failed backward through a freed subgraph changes no gradient") {
    xgrad::Parameter<double> w(Tensor<double>{2.0});
    Graph<double> g;
    auto x = g.variable(Tensor<double>{1.0});
    auto shared = xgrad::tanh(g.parameter(w) * x);
    auto first = xgrad::sum(shared);
    auto second = xgrad::sum(shared * 3.0 + x);
    first.backward();
    const double w_grad = w.grad()(0), x_grad = x.grad()(0);
    CHECK_THROWS_WITH_AS(second.backward(), doctest::Contains("(tanh) was already freed"), xgrad::GraphError);
    CHECK(w.grad()(0) == w_grad);
    CHECK(x.grad()(0) == x_grad);
}

TEST_CASE("values stay valid while later ops append nodes") {
    Graph<double> g;
    const auto first = g.variable(Tensor<double>{1.0, 2.0});
    const Tensor<double>& kept = first.value();
    auto x = first;
    for (int i = 0; i < 10000; ++i) x = x * 1.0;
    CHECK(kept == Tensor<double>{1.0, 2.0});
}

TEST_CASE("a graph keeps what its backwards read and the values a Var refers to, nothing else") {
    Graph<double> g;
    const std::size_t n = 1000, bytes = n * sizeof(double);
    auto x = g.variable(xt::ones<double>({n}));
    // add's backward reads nothing: each intermediate goes with its last handle.
    auto y = x;
    for (int i = 0; i < 50; ++i) y = y + 1.0;
    CHECK(g.value_bytes() == 2 * bytes);  // x and y
    // tanh's backward reads its output: all 50 stay until backward has run.
    auto z = y;
    for (int i = 0; i < 50; ++i) z = xgrad::tanh(z);
    CHECK(g.value_bytes() == 52 * bytes);
    auto loss = xgrad::sum(z);
    loss.backward(/*retain_graph=*/true);
    CHECK(g.value_bytes() == 52 * bytes + sizeof(double));  // kept for another backward
    loss.backward();
    CHECK(g.value_bytes() == 3 * bytes + sizeof(double));  // x, y, z and the loss: the Vars still held
    // A product keeps its other factor only when this one needs a gradient: a constant mask times a
    // variable keeps the mask, not the variable.
    Graph<double> h;
    auto mask = h.constant(xt::ones<double>({n}));
    auto w = h.variable(xt::ones<double>({n}));
    auto masked = (w + 1.0) * mask;
    CHECK(h.value_bytes() == 3 * bytes);  // mask, w, masked: not w + 1
}

TEST_CASE("a weight used at every step is laid out once per graph, with the plain product's values and gradients") {
    // linear against a leaf with few rows: from its second use on the graph's laid-out copy serves
    // forward (x Wᵀ) and backward (dy W). matmul with an explicit transpose computes the same plainly.
    Tensor<double> w0 = xt::linspace<double>(-1.0, 1.0, 12), x0 = xt::linspace<double>(0.5, -0.5, 8);
    w0.reshape({3, 4});
    x0.reshape({2, 4});
    std::vector<Tensor<double>> results[2];
    for (bool laid_out : {true, false}) {
        Graph<double> g;
        auto w = g.variable(w0);
        auto h = g.variable(x0);
        for (int step = 0; step < 4; ++step) {
            auto y = laid_out ? xgrad::linear(h, w) : xgrad::matmul(h, xgrad::transpose(w, 0, 1));
            h = xgrad::tanh(xgrad::narrow(y, 1, 0, 2) * 0.5 + xgrad::narrow(y, 1, 1, 2) * 0.25);
            h = xgrad::concat(std::vector<Var<double>>{h, h}, 1);
        }
        xgrad::sum(h * h).backward();
        results[laid_out].push_back(h.value());
        results[laid_out].push_back(w.grad());
    }
    for (std::size_t i = 0; i < 2; ++i) CHECK(xt::allclose(results[0][i], results[1][i], 1e-14, 1e-14));
}

TEST_CASE("handles: self-assignment, assignment between handles of one node, and a Var held inside a node") {
    Graph<double> g;
    const std::size_t bytes = 4 * sizeof(double);
    auto x = g.variable(xt::ones<double>({4}));
    auto y = x + 1.0;
    auto& same = y;
    y = same;  // self-assignment keeps the node
    auto z = y;
    y = z;     // a handle of the same node
    z = Var<double>();
    CHECK(g.value_bytes() == 2 * bytes);  // x and y
    CHECK(y.value() == Tensor<double>{2.0, 2.0, 2.0, 2.0});
    y = Var<double>();
    CHECK(g.value_bytes() == bytes);  // y's node had no handle left
    // A custom op whose backward keeps a Var of its own graph: destroying the graph destroys that
    // Var too, after every handle into the graph became stale (sanitizers check the rest).
    auto keeper = x * 2.0;
    auto op = x.tape().record("keeps_a_var", keeper.value(), {x}, [kept = keeper](xgrad::BackwardContext<double>& c) {
        c.accumulate(0, c.output_grad() * 2.0);
    }, xgrad::Saves::nothing());
    keeper = Var<double>();
    xgrad::sum(op).backward(/*retain_graph=*/true);
    CHECK(x.grad() == Tensor<double>{2.0, 2.0, 2.0, 2.0});
    g.clear();
    CHECK_THROWS_AS(op.value(), xgrad::GraphError);
}

TEST_CASE("an op that reads a value it did not declare in Saves fails on every backward") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{1.0, 2.0});
    auto undeclared = x.tape().record("square_undeclared", x.value() * x.value(), {x}, [](xgrad::BackwardContext<double>& c) {
        c.accumulate(0, 2.0 * c.output_grad() * c.input(0));
    }, xgrad::Saves::nothing());
    CHECK_THROWS_WITH_AS(xgrad::sum(undeclared).backward(),
                         "square_undeclared backward: reads input 0, which the op's Saves does not list", xgrad::GraphError);
    auto output_undeclared = x.tape().record("exp_undeclared", xt::exp(x.value()), {x}, [](xgrad::BackwardContext<double>& c) {
        c.accumulate(0, c.output_grad() * c.output());
    }, xgrad::Saves::input(0));
    CHECK_THROWS_WITH_AS(xgrad::sum(output_undeclared).backward(),
                         "exp_undeclared backward: reads its output, which the op's Saves does not list", xgrad::GraphError);
}

TEST_CASE("a temporary's value is a copy that outlives it") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{1.0, 2.0});
    const auto& doubled = (x * 2.0).value();  // the node is freed with the temporary; the copy is not
    auto later = x + 5.0;                     // reuses the freed memory under a plain allocator
    CHECK(doubled == Tensor<double>{2.0, 4.0});
    CHECK(later.value() == Tensor<double>{6.0, 7.0});
}

TEST_CASE("a custom op's backward is checked: input index and gradient shape") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    auto bad_index = x.tape().record("bad_index", x.value(), {x}, [](xgrad::BackwardContext<double>& c) {
        c.accumulate(1, c.output_grad());
    });
    CHECK_THROWS_WITH_AS(xgrad::sum(bad_index).backward(), doctest::Contains("bad_index backward: input 1 requested"),
                         xgrad::GraphError);
    auto bad_shape = x.tape().record("bad_shape", x.value(), {x}, [](xgrad::BackwardContext<double>& c) {
        Tensor<double> g = c.output_grad();
        g.reshape({3, 2});
        c.accumulate(0, g);
    });
    CHECK_THROWS_WITH_AS(xgrad::sum(bad_shape).backward(), doctest::Contains("bad_shape"), xgrad::ShapeError);
}

TEST_CASE("empty handles raise, and handles from another graph are named in op errors") {
    Graph<double> g1, g2;
    auto a = g1.variable(Tensor<double>{1.0});
    CHECK_THROWS_WITH_AS(a * xgrad::Var<double>(), doctest::Contains("empty variable handle"), xgrad::GraphError);
    CHECK_THROWS_WITH_AS(a * g2.variable(Tensor<double>{1.0}), "mul: input 1 comes from a different graph than input 0",
                         xgrad::GraphError);
}

TEST_CASE("detach into another graph carries a value across graphs") {
    Graph<double> first;
    auto h = xgrad::tanh(first.variable(Tensor<double>{0.5}));
    Graph<double> second;
    auto carried = h.detach(second);
    first.clear();
    CHECK(carried.value()(0) == doctest::Approx(std::tanh(0.5)));
    CHECK_FALSE(carried.requires_grad());
}

TEST_CASE("no_grad records values only") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{1.0});
    Var<double> y;
    {
        xgrad::NoGradGuard guard;
        CHECK_FALSE(xgrad::grad_enabled());
        y = xgrad::exp(x);
    }
    CHECK(xgrad::grad_enabled());
    CHECK_FALSE(y.requires_grad());
    CHECK(y.value()(0) == doctest::Approx(std::exp(1.0)));
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("does not require grad"), xgrad::GraphError);
}

TEST_CASE("detach stops gradients") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{3.0});
    auto y = xgrad::sum(x * x.detach());  // d/dx = x.detach() = 3, not 2x
    y.backward();
    CHECK(x.grad()(0) == doctest::Approx(3.0));
}

TEST_CASE("a second backward through a released graph raises") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{3.0});
    auto y = xgrad::sum(xgrad::tanh(x));
    y.backward();
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("retain_graph"), xgrad::GraphError);
}

TEST_CASE("a handle into a cleared or destroyed graph raises") {
    Var<double> kept;
    {
        Graph<double> g;
        kept = g.variable(Tensor<double>{1.0});
        auto y = kept * 2.0;
        g.clear();
        CHECK_THROWS_WITH_AS(y.value(), doctest::Contains("cleared"), xgrad::GraphError);
        CHECK_THROWS_AS(xgrad::exp(y), xgrad::GraphError);
        kept = g.variable(Tensor<double>{1.0});
    }
    CHECK_THROWS_AS(kept.value(), xgrad::GraphError);
    CHECK_THROWS_AS(Var<double>().value(), xgrad::GraphError);
}

TEST_CASE("inputs from two graphs raise") {
    Graph<double> g1, g2;
    auto a = g1.variable(Tensor<double>{1.0});
    auto b = g2.variable(Tensor<double>{1.0});
    CHECK_THROWS_WITH_AS(a + b, doctest::Contains("add: input 1 comes from a different graph"), xgrad::GraphError);
}

TEST_CASE("backward of a non-scalar needs a seed of its shape") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{1.0, 2.0});
    auto y = x * 2.0;
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("(2,)"), xgrad::ShapeError);
    CHECK_THROWS_AS(g.backward(y, Tensor<double>{1.0}), xgrad::ShapeError);
    g.backward(y, Tensor<double>{1.0, 10.0});
    CHECK(x.grad() == Tensor<double>{2.0, 20.0});
}

namespace {
struct ChainResult {
    double grad = 0;
    bool ok = false;
};

void* run_deep_chain(void* arg) {
    auto* result = static_cast<ChainResult*>(arg);
    try {
        {
            Graph<float> g;
            auto x = g.variable(Tensor<float>(1.0f));
            Var<float> y = x;
            for (int i = 0; i < 1'000'000; ++i) y = y * 1.0f;
            y.backward();
            result->grad = x.grad()();
        }  // the graph is freed here, on the same small stack
        result->ok = true;
    } catch (...) {  // an exception escaping the thread would terminate the whole test program
        result->ok = false;
    }
    return nullptr;
}
}  // namespace

TEST_CASE("a chain of 1,000,000 nodes backpropagates and frees on a 256 KiB stack") {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    REQUIRE(pthread_attr_setstacksize(&attr, 256 * 1024) == 0);
    ChainResult result;
    pthread_t thread;
    REQUIRE(pthread_create(&thread, &attr, run_deep_chain, &result) == 0);
    pthread_join(thread, nullptr);
    pthread_attr_destroy(&attr);
    CHECK(result.ok);
    CHECK(result.grad == doctest::Approx(1.0));
}

TEST_CASE("memory stops growing when graphs are built and freed again and again") {
    Var<float> survivor;  // a handle that outlives its graph must not keep the nodes alive
    auto build = [&survivor] {
        Graph<float> g;
        auto x = g.variable(xt::ones<float>({64, 64}));
        Var<float> y = x;
        for (int i = 0; i < 200; ++i) y = xgrad::tanh(xgrad::matmul(y, x));
        xgrad::sum(y).backward();
        survivor = y;
    };
    // A 200-node graph of 64x64 floats holds ~6 MB: a graph left behind would grow the heap every round.
    const test::HeapGrowth growth = test::heap_growth(build);
    CAPTURE(fmt::format("{}", fmt::join(growth.levels, " -> ")));
    CHECK(growth.stopped);
    // The survivor holds its node's value at most, not the graph: letting it go frees far less than one.
    const std::size_t with_survivor = test::heap_bytes_in_use();
    survivor = Var<float>();
    CHECK(with_survivor - std::min(with_survivor, test::heap_bytes_in_use()) < 1'000'000);
}

TEST_CASE("anomaly detection names the op, its place on the tape and the shapes, forward and backward") {
    Graph<double> g;
    auto x = g.variable(Tensor<double>{0.0, 1.0});
    CHECK_NOTHROW(xgrad::log(x));  // off by default: -inf passes silently
    {
        xgrad::DetectAnomalyGuard guard;
        CHECK(xgrad::anomaly_detection_enabled());
        CHECK_THROWS_WITH_AS(xgrad::log(x), doctest::Contains("anomaly: log (node 2) produced NaN or Inf in its output of shape (2,) from inputs of shapes (2,)"),
                             xgrad::AnomalyError);
        // sqrt(x) is finite at 0, but its gradient 1 / (2 sqrt(x)) is not.
        auto y = xgrad::sum(xgrad::sqrt(x));
        CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("the backward of sqrt"), xgrad::AnomalyError);
    }
    CHECK_FALSE(xgrad::anomaly_detection_enabled());
}
