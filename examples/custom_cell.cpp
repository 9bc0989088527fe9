// A recurrent cell of your own, with the whole layer machinery: the IndRNN cell of
// examples/indrnn_cell.hpp (a graph step in three primitive ops, plus its handwritten fused rows)
// wrapped in nn::Recurrent, which stacks it, runs it bidirectionally and over variable lengths on
// either implementation, and with dropout and zoneout (on the graph path).
//   1. Its handwritten backward is cross-checked against the graph path and finite differences
//      (the report xgrad's verify_gradients prints for the built-in cells).
//   2. Two stacked IndRNN layers learn the adding problem: each step carries a random number and
//      a 0/1 marker, and the target is the sum of the two marked numbers, a task that needs memory
//      across the whole sequence. The same model trains on both implementations from the same
//      seed: their losses agree at first and drift apart only as float rounding compounds.
//
//   ./build/examples/custom_cell --steps 2000 --length 50
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "cli_checks.hpp"
#include "guards.hpp"
#include "indrnn_cell.hpp"

using xgrad::Tensor;
namespace nn = xgrad::nn;

namespace {
// The adding problem: x (T, B, 2) = (value, marker), target (B, 1) = the sum of the two marked values.
std::pair<Tensor<float>, Tensor<float>> adding_batch(std::size_t steps, std::size_t batch, xgrad::Generator& gen) {
    Tensor<float> x = Tensor<float>::from_shape({steps, batch, 2});
    Tensor<float> y = Tensor<float>::from_shape({batch, 1});
    for (std::size_t b = 0; b < batch; ++b) {
        const std::size_t first = gen.below(steps / 2), second = steps / 2 + gen.below(steps / 2);
        y(b, 0) = 0;
        for (std::size_t t = 0; t < steps; ++t) {
            x(t, b, 0) = static_cast<float>(gen.uniform01());
            x(t, b, 1) = t == first || t == second ? 1.0f : 0.0f;
            if (t == first || t == second) y(b, 0) += x(t, b, 0);
        }
    }
    return {x, y};
}

class AddingModel : public nn::Module<float> {
  public:
    AddingModel(std::size_t hidden, nn::RecurrentImplementation impl, xgrad::Generator& gen)
        : Module("AddingModel"),
          rnn(nn::RecurrentOptions(2, hidden).num_layers(2).implementation(impl), gen),
          head(hidden, 1, true, gen) {
        register_module("rnn", rnn);
        register_module("head", head);
        // IndRNN's recurrent weights start in [0, 1] (Li et al.), so every unit begins with a memory.
        for (auto& [name, p] : rnn.named_parameters()) {
            if (name.starts_with("weight_hh")) p.value() = xgrad::uniform<float>(p.shape(), 0.0, 1.0, gen);
        }
    }
    // The prediction from the top layer's output at the last step.
    xgrad::Var<float> forward(const xgrad::Var<float>& x) {
        const auto output = rnn.forward(x).output;
        return head.forward(xgrad::select(output, 0, x.shape()[0] - 1));
    }

    nn::Recurrent<IndRNNCell> rnn;
    nn::Linear<float> head;
};

constexpr std::size_t batch = 32;
constexpr const char* sizes = "--hidden or --length";  // the flags that decide the memory a run needs

int run(int argc, char** argv) {
    std::size_t steps = 2000, length = 50, hidden = 32;
    CLI::App app{"A user-defined recurrent cell (IndRNN): its handwritten backward cross-checked, then trained on the adding problem."};
    app.add_option("--steps", steps, "training steps")->check(CLI::Range(1, 1000000));
    app.add_option("--length", length, "sequence length of the adding problem")->check(CLI::Range(2, 100000));
    app.add_option("--hidden", hidden, "hidden units per layer")->check(CLI::Range(1, 4096));
    if (auto status = examples::parse_command_line(app, argc, argv, "custom_cell")) return *status;

    // 1. The cell's fused backward against the graph path and central differences, in double, on
    // two bidirectional layers with sequences of different lengths.
    nn::RecurrentVerifyOptions o;
    o.input_size(3);
    o.hidden_size(5);
    o.num_layers(2);
    o.bidirectional(true);
    o.lengths({6, 3, 5});
    const nn::RecurrentVerifyReport report = nn::verify_cell_gradients(IndRNNCell{}, o);
    fmt::print("{}\n", nn::format_report(report, o));
    if (!report.passed) return 1;

    // 2. The adding problem on both implementations, same seed. Predicting the mean (1.0) scores an MSE of about 0.17.
    fmt::print("training on the adding problem (T = {}, batch {}, 2 IndRNN layers of {}):\n", length, batch, hidden);
    fmt::print("{:>6} {:>12} {:>12}\n", "step", "mse graph", "mse fused");
    double running[2] = {0, 0};
    xgrad::Generator gen[2] = {xgrad::Generator(3), xgrad::Generator(3)};
    const nn::RecurrentImplementation impls[2] = {nn::RecurrentImplementation::graph, nn::RecurrentImplementation::fused};
    std::unique_ptr<AddingModel> models[2];
    std::unique_ptr<xgrad::optim::Adam<float>> adams[2];
    for (int i = 0; i < 2; ++i) {
        models[i] = std::make_unique<AddingModel>(hidden, impls[i], gen[i]);
        adams[i] = std::make_unique<xgrad::optim::Adam<float>>(models[i]->parameters(), xgrad::optim::AdamOptions(2e-3));
    }
    // Both models' parameters, and one step's graph at a time: two layers over the whole sequence (IndRNN: one gate).
    const double positions = static_cast<double>(length * batch);
    examples::check_memory("training the two models", examples::training_bytes(2 * models[0]->parameter_count(),
                                                                                   2 * examples::recurrent_floats(positions, hidden, 1)),
                           sizes);
    for (std::size_t step = 1; step <= steps; ++step) {
        for (int i = 0; i < 2; ++i) {
            auto [x, y] = adding_batch(length, batch, gen[i]);
            xgrad::Graph<float> g;
            auto loss = xgrad::mse_loss(models[i]->forward(g.constant(x)), g.constant(y));
            adams[i]->zero_grad();
            loss.backward();
            examples::stop_unless_finite(step, loss.item(), nn::clip_grad_norm(models[i]->parameters(), 1.0));
            adams[i]->step();
            running[i] = step == 1 ? loss.item() : 0.95 * running[i] + 0.05 * loss.item();
        }
        if (step % std::max<std::size_t>(steps / 10, 1) == 0 || step == 1) {
            fmt::print("{:>6} {:>12.5f} {:>12.5f}\n", step, running[0], running[1]);
        }
    }
    return 0;
}
}  // namespace

int main(int argc, char** argv) { return examples::run_guarded("custom_cell", sizes, [&] { return run(argc, argv); }); }
