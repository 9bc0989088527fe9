// Truncated backpropagation through time: an RNN reads one long signal in chunks, carrying its
// hidden state from chunk to chunk. Each chunk gets a fresh graph; the state crosses over with
// detach(next_graph), so gradients stop at the chunk boundary and memory stays bounded however
// long the stream is. The task: predict the next sample of a noisy sum of two sines.
//
//   ./build/examples/truncated_bptt [chunks] [--fused]
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <string>

#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "guards.hpp"

using xgrad::Tensor;

namespace {
int run(int argc, char** argv) {
    const int chunks = argc > 1 ? std::atoi(argv[1]) : 400;
    const bool fused = argc > 2 && std::string(argv[2]) == "--fused";
    if (chunks <= 0) {
        fmt::print(stderr, "usage: truncated_bptt [chunks > 0] [--fused]\n");
        return 2;
    }
    constexpr std::size_t streams = 8, chunk = 25, hidden = 32;
    const float lr = 0.05f;
    xgrad::Generator gen(7);
    auto signal = [](std::size_t stream, std::size_t t) {
        const double x = 0.07 * static_cast<double>(t) + static_cast<double>(stream);
        return static_cast<float>(0.6 * std::sin(x) + 0.3 * std::sin(2.7 * x));
    };
    xgrad::nn::RNN<float> rnn(xgrad::nn::RNNOptions(1, hidden).implementation(
        fused ? xgrad::nn::RecurrentImplementation::fused : xgrad::nn::RecurrentImplementation::graph), gen);
    xgrad::nn::Linear<float> head(hidden, 1, true, gen);
    std::vector<xgrad::Parameter<float>> params = rnn.parameters();
    for (const auto& p : head.parameters()) params.push_back(p);

    Tensor<float> carried = Tensor<float>::from_shape({1, streams, hidden});
    carried.fill(0.0f);
    double running = 0;
    for (int c = 0; c < chunks; ++c) {
        Tensor<float> inputs = Tensor<float>::from_shape({chunk, streams, 1});
        Tensor<float> targets = Tensor<float>::from_shape({chunk, streams, 1});
        for (std::size_t t = 0; t < chunk; ++t) {
            for (std::size_t s = 0; s < streams; ++s) {
                const std::size_t at = static_cast<std::size_t>(c) * chunk + t;
                inputs(t, s, 0) = signal(s, at) + static_cast<float>(gen.normal(0.0, 0.02));
                targets(t, s, 0) = signal(s, at + 1);
            }
        }
        xgrad::Graph<float> g;  // one graph per chunk
        auto h0 = g.constant(carried);
        auto [output, h_n] = rnn.forward(g.constant(inputs), h0);
        auto loss = xgrad::mse_loss(head.forward(output), g.constant(targets));
        for (auto& p : params) p.zero_grad();
        loss.backward();
        examples::stop_unless_finite(static_cast<std::size_t>(c) + 1, loss.item(), xgrad::nn::clip_grad_norm(params, 1.0));
        for (auto& p : params) p.value() -= lr * p.grad();
        carried = h_n.value();  // the state goes on; its history does not
        running = c == 0 ? loss.item() : 0.95 * running + 0.05 * loss.item();
        if ((c + 1) % (chunks / 8 > 0 ? chunks / 8 : 1) == 0) {
            fmt::print("chunk {:4d}  samples {:6d}  mse {:.5f}\n", c + 1, (c + 1) * static_cast<int>(chunk * streams),
                       running);
        }
    }
    return 0;
}
}  // namespace

// The sizes are fixed: nothing to lower.
int main(int argc, char** argv) { return examples::run_guarded("truncated_bptt", "", [&] { return run(argc, argv); }); }
