// Many-to-one: a recurrent network reads a sequence of symbols, two of them marked, and says
// whether the two marked symbols are the same. The first mark can be anywhere, so the network has
// to carry a symbol across the whole sequence. Batches mix lengths: nn::pad_sequences pads them,
// the lengths go to the layer, and each sequence's label is read from its state at its own last
// step. Trained on lengths up to --max-length; tested there and on sequences up to four times
// longer than any it saw. Biases and weights are two parameter groups (no weight decay on biases).
//
//   ./build/examples/classify_sequences              # about 10 seconds
//   ./build/examples/classify_sequences --help
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "training.hpp"

namespace nn = xgrad::nn;
namespace optim = xgrad::optim;
using xgrad::Tensor;
using xgrad::Var;

namespace {
constexpr std::size_t symbols = 8, features = symbols + 1;  // one-hot symbol, then the mark
constexpr const char* sizes = "--hidden, --batch or --max-length";  // the flags that decide the memory a run needs

struct Batch {
    std::vector<Tensor<float>> sequences;  // (L_i, features)
    xgrad::Indices labels;                 // (B,): 1 when the marked symbols match
};

// B sequences of lengths in [min_length, max_length], half of them matching.
Batch make_batch(std::size_t batch, std::size_t min_length, std::size_t max_length, xgrad::Generator& gen) {
    Batch b{{}, xgrad::Indices::from_shape({batch})};
    for (std::size_t i = 0; i < batch; ++i) {
        const std::size_t length = min_length + gen.below(max_length - min_length + 1);
        Tensor<float> x = Tensor<float>::from_shape({length, features});
        x.fill(0.0f);
        std::vector<std::size_t> symbol(length);
        for (std::size_t t = 0; t < length; ++t) symbol[t] = gen.below(symbols);
        const std::size_t first = gen.below(length - 1);
        const std::size_t second = first + 1 + gen.below(length - first - 1);
        const bool match = gen.below(2) == 1;
        symbol[second] = match ? symbol[first] : (symbol[first] + 1 + gen.below(symbols - 1)) % symbols;
        for (std::size_t t = 0; t < length; ++t) x(t, symbol[t]) = 1.0f;
        x(first, symbols) = x(second, symbols) = 1.0f;
        b.sequences.push_back(std::move(x));
        b.labels(i) = match ? 1 : 0;
    }
    return b;
}

struct Classifier : nn::Module<float> {
    Classifier(const std::string& cell, std::size_t hidden)
        : Module("Classifier"),
          rnn(register_module("rnn", nn::make_recurrent<float>(cell, nn::RecurrentOptions(features, hidden)))),
          head(register_module("head", std::make_shared<nn::Linear<float>>(hidden, 2))) {
        rnn->settings().implementation(nn::RecurrentImplementation::fused);
    }
    // Logits (B, 2) from each sequence's state at its own last step.
    Var<float> forward(xgrad::Graph<float>& g, const Batch& batch) {
        std::vector<Var<float>> xs;
        for (const auto& x : batch.sequences) xs.push_back(g.constant(x));
        const auto padded = nn::pad_sequences(xs);  // (T, B, features), lengths, mask
        const auto states = rnn->forward_states(padded.padded, {}, padded.lengths).states;
        return head->forward(xgrad::select(states[0], 0, -1));  // h_n of the last layer: (B, hidden)
    }
    std::shared_ptr<nn::RecurrentBase<float>> rnn;
    std::shared_ptr<nn::Linear<float>> head;
};

double test_accuracy(Classifier& model, std::size_t min_length, std::size_t max_length, std::size_t count,
                     xgrad::Generator& gen) {
    xgrad::NoGradGuard no_grad;
    double correct = 0;
    for (std::size_t done = 0; done < count; done += 500) {
        const Batch batch = make_batch(std::min<std::size_t>(500, count - done), min_length, max_length, gen);
        xgrad::Graph<float> g;
        correct += xgrad::accuracy(model.forward(g, batch), batch.labels) * static_cast<double>(batch.labels.size());
    }
    return correct / static_cast<double>(count);
}

int run(int argc, char** argv) {
    CLI::App app("Many-to-one sequence classification: do the two marked symbols match?");
    std::string cell = "lstm";
    examples::TrainingFlags flags{.steps = 4000, .batch = 64, .hidden = 64, .test_size = 2000, .lr = 3e-3};
    examples::LengthFlags lengths{.min_length = 4, .max_length = 30};
    double weight_decay = 1e-4;
    app.add_option("--cell", cell, "lstm, gru or rnn")->check(CLI::IsMember(nn::recurrent_cell_names()))->capture_default_str();
    examples::add_training_flags(app, flags);
    examples::add_length_flags(app, lengths, 2);
    app.add_option("--weight-decay", weight_decay, "on weights (biases get none)")
        ->check(examples::finite_number() & CLI::NonNegativeNumber)
        ->capture_default_str();
    if (auto status = examples::parse_with_lengths(app, argc, argv, "classify_sequences", lengths)) return *status;

    examples::apply_process_flags(flags);
    xgrad::keep_freed_memory();  // every step frees and allocates the same blocks again
    xgrad::manual_seed(flags.seed);
    xgrad::Generator data(flags.seed + 1);
    Classifier model(cell, flags.hidden);
    // Training keeps a whole batch's activations; testing runs batches of up to 500 sequences four times as long.
    const std::size_t gates = model.rnn->cell().gates();
    const double train_positions = static_cast<double>(lengths.max_length * flags.batch);
    const double test_positions = static_cast<double>(4 * lengths.max_length * std::min<std::size_t>(500, flags.test_size));
    const double activations = std::max(examples::recurrent_floats(train_positions, flags.hidden, gates),
                                        examples::recurrent_floats(test_positions, flags.hidden, gates, false));
    examples::check_memory("training this model", examples::training_bytes(model.parameter_count(), activations), sizes);
    std::vector<xgrad::Parameter<float>> weights, biases;  // the usual split: no weight decay on biases
    for (const auto& [name, p] : model.named_parameters()) (name.find("bias") != std::string::npos ? biases : weights).push_back(p);
    optim::AdamW<float> opt({optim::ParamGroup<float>(weights).weight_decay(weight_decay), optim::ParamGroup<float>(biases).weight_decay(0)},
                            optim::AdamOptions(flags.lr));

    fmt::print("{} {} over {} symbols, training lengths {}..{}, batch {}, {} steps\n", cell, flags.hidden, symbols, lengths.min_length,
               lengths.max_length, flags.batch, flags.steps);
    const std::vector<double> losses = examples::train(flags.steps, opt, "batch accuracy", [&](xgrad::Graph<float>& g, bool report) {
        const Batch b = make_batch(flags.batch, lengths.min_length, lengths.max_length, data);
        const Var<float> logits = model.forward(g, b);
        return std::pair(xgrad::cross_entropy(logits, b.labels), report ? xgrad::accuracy(logits, b.labels) : 0.0);
    });

    xgrad::Generator test(flags.seed + 2);  // a generator of its own: new draws, not the training's sequence
    fmt::print("test accuracy ({} sequences each):\n", flags.test_size);
    const std::vector<std::pair<std::size_t, std::size_t>> ranges = {
        {lengths.min_length, lengths.max_length}, {lengths.max_length + 1, 2 * lengths.max_length}, {2 * lengths.max_length + 1, 4 * lengths.max_length}};
    for (const auto& [lo, hi] : ranges) {
        fmt::print("  lengths {:3d}..{:3d}{}  {:6.2f}%\n", lo, hi, lo > lengths.max_length ? " (longer than any trained on)" : "                             ",
                   100 * test_accuracy(model, lo, hi, flags.test_size, test));
    }
    return examples::require_loss_below("classify_sequences", losses, flags.require_loss_below);
}
}  // namespace

int main(int argc, char** argv) { return examples::run_guarded("classify_sequences", sizes, [&] { return run(argc, argv); }); }
