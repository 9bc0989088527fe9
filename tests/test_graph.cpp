// The tape: accumulation, parameters, grad mode, detach, retain_graph, released and cleared
// graphs, depth, and memory.
#include <malloc.h>
#include <pthread.h>

#include <doctest/doctest.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

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

TEST_CASE("leaf gradients accumulate across backward passes; non-leaf ones do not") {
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
    CHECK_THROWS_WITH_AS(a + b, doctest::Contains("two different graphs"), xgrad::GraphError);
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
    {
        Graph<float> g;
        auto x = g.variable(Tensor<float>(1.0f));
        Var<float> y = x;
        for (int i = 0; i < 1'000'000; ++i) y = y * 1.0f;
        y.backward();
        result->grad = x.grad()();
    }  // the graph is freed here, on the same small stack
    result->ok = true;
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

TEST_CASE("memory returns to its starting level after a graph is freed") {
    auto in_use = [] { return mallinfo2().uordblks; };
    auto build = [] {
        Graph<float> g;
        auto x = g.variable(xt::ones<float>({64, 64}));
        Var<float> y = x;
        for (int i = 0; i < 200; ++i) y = xgrad::tanh(xgrad::matmul(y, x));
        xgrad::sum(y).backward();
    };
    build();  // warm up allocator caches and BLAS buffers
    const std::size_t before = in_use();
    build();
    const std::size_t after = in_use();
    // A 200-node graph of 64x64 floats holds ~6 MB; anything left behind would show here.
    CHECK(after <= before + 4096);
}
