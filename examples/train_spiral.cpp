// Trains a two-layer network on the classic three-arm spiral and prints the loss falling.
// Everything is xgrad's primitive ops; the update is plain gradient descent.
//
//   ./build/examples/train_spiral [steps] [learning rate]
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <string>

#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "guards.hpp"

using xgrad::Tensor;

namespace {
constexpr std::size_t points_per_class = 100, classes = 3, hidden = 64;

struct Dataset {
    Tensor<float> x;         // (N, 2)
    xgrad::Indices labels;   // (N,)
};

Dataset make_spiral(xgrad::Generator& gen) {
    const std::size_t n = points_per_class * classes;
    Dataset d{Tensor<float>::from_shape({n, 2}), xgrad::Indices::from_shape({n})};
    for (std::size_t c = 0; c < classes; ++c) {
        for (std::size_t i = 0; i < points_per_class; ++i) {
            const std::size_t row = c * points_per_class + i;
            const double r = static_cast<double>(i) / points_per_class;
            const double angle = 4.0 * (static_cast<double>(c) + r) + gen.normal(0.0, 0.2);
            d.x(row, 0) = static_cast<float>(r * std::sin(angle));
            d.x(row, 1) = static_cast<float>(r * std::cos(angle));
            d.labels(row) = static_cast<std::int64_t>(c);
        }
    }
    return d;
}

int run(int argc, char** argv) {
    const int steps = argc > 1 ? std::atoi(argv[1]) : 2000;
    const float lr = argc > 2 ? std::stof(argv[2]) : 0.5f;
    if (steps <= 0 || !(lr > 0)) {
        fmt::print(stderr, "usage: train_spiral [steps > 0] [learning rate > 0]\n");
        return 2;
    }
    xgrad::Generator gen(0);
    const Dataset data = make_spiral(gen);
    xgrad::Parameter<float> w1(xgrad::xavier_uniform<float>({2, hidden}, gen));
    xgrad::Parameter<float> b1(Tensor<float>(xt::zeros<float>({hidden})));
    xgrad::Parameter<float> w2(xgrad::xavier_uniform<float>({hidden, classes}, gen));
    xgrad::Parameter<float> b2(Tensor<float>(xt::zeros<float>({classes})));
    const std::vector<xgrad::Parameter<float>*> params = {&w1, &b1, &w2, &b2};

    fmt::print("spiral: {} points, {} classes, MLP 2-{}-{}, {} steps of gradient descent (lr {})\n",
               data.x.shape(0), classes, hidden, classes, steps, lr);
    for (int step = 0; step <= steps; ++step) {
        xgrad::Graph<float> g;
        auto x = g.constant(data.x);
        auto h = xgrad::tanh(xgrad::matmul(x, g.parameter(w1)) + g.parameter(b1));
        auto logits = xgrad::matmul(h, g.parameter(w2)) + g.parameter(b2);
        auto loss = xgrad::cross_entropy(logits, data.labels);
        if (step % (steps / 10 > 0 ? steps / 10 : 1) == 0 || step == steps) {
            std::size_t correct = 0;
            for (std::size_t i = 0; i < data.labels.size(); ++i) {
                std::size_t best = 0;
                for (std::size_t k = 1; k < classes; ++k) best = logits.value()(i, k) > logits.value()(i, best) ? k : best;
                correct += static_cast<std::int64_t>(best) == data.labels(i);
            }
            fmt::print("step {:5d}  loss {:.4f}  accuracy {:5.1f}%\n", step, loss.item(),
                       100.0 * static_cast<double>(correct) / static_cast<double>(data.labels.size()));
        }
        if (step == steps) break;
        examples::stop_unless_finite(static_cast<std::size_t>(step), loss.item());
        for (auto* p : params) p->zero_grad();
        loss.backward();
        for (auto* p : params) p->value() -= lr * p->grad();
    }
    return 0;
}
}  // namespace

// The sizes are fixed: nothing to lower.
int main(int argc, char** argv) { return examples::run_guarded("train_spiral", "", [&] { return run(argc, argv); }); }
