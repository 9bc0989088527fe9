// Long unrolls: RNN, LSTM and GRU over 100,000 steps (hidden size 8) train one step in both
// implementations, and their gradients agree. The graph path holds about a million nodes here.
#include <chrono>
#include <memory>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

namespace nn = xgrad::nn;

TEST_CASE("RNN, LSTM and GRU unrolled over 100,000 steps: one training step each way, the same gradients" * doctest::test_suite("slow")) {
    constexpr std::size_t steps = 100'000, batch = 1, input = 3, hidden = 8;
    for (int cell = 0; cell < 3; ++cell) {
        CAPTURE(cell);
        std::vector<xgrad::Tensor<float>> grads[2];
        float losses[2] = {0, 0};
        for (int i = 0; i < 2; ++i) {
            xgrad::Generator gen(4);
            auto layer = nn::make_recurrent<float>(nn::recurrent_cell_names()[static_cast<std::size_t>(cell)],
                                                   nn::RecurrentOptions(input, hidden), gen);
            layer->settings().implementation(i == 0 ? nn::RecurrentImplementation::graph : nn::RecurrentImplementation::fused);
            nn::Linear<float> head(hidden, 1, true, gen);
            auto params = layer->parameters();
            for (const auto& p : head.parameters()) params.push_back(p);
            xgrad::optim::SGD<float> sgd(params, xgrad::optim::SGDOptions(0.01));
            xgrad::Graph<float> g;
            auto x = g.constant(xgrad::uniform<float>({steps, batch, input}, -1, 1, gen));
            auto target = g.constant(xgrad::uniform<float>({steps, batch, 1}, -1, 1, gen));
            auto r = layer->forward_states(x);
            auto loss = xgrad::mse_loss(head.forward(r.output), target);
            sgd.zero_grad();
            loss.backward();
            losses[i] = loss.item();
            for (const auto& p : params) {
                CHECK(xt::all(xt::isfinite(p.grad())));
                grads[i].push_back(p.grad());
            }
            sgd.step();
        }
        CHECK(losses[0] == doctest::Approx(losses[1]).epsilon(1e-5));
        for (std::size_t k = 0; k < grads[0].size(); ++k) {
            CAPTURE(k);
            const float scale = std::max(1.0f, xt::amax(xt::abs(grads[0][k]))());
            CHECK(xt::amax(xt::abs(grads[0][k] - grads[1][k]))() <= 1e-4f * scale);
        }
    }
}
