// Many-to-many, aligned: a bidirectional GRU tags every position of a sequence of symbols with
// whether that symbol occurs anywhere else in the sequence, before or after it. A left-to-right
// network sees only the earlier half of that question (try --unidirectional); the reverse
// direction answers the rest. Sequences of mixed lengths are padded (nn::pad_sequences on the
// symbol ids, and on the tags with -100, the ignore index), the lengths go to the layer so the
// reverse direction starts at each sequence's own end, and the per-step head is an nn::Sequential.
// Accuracy is per real token: padding counts for nothing.
//
//   ./build/examples/tag_sequences                   # about 5 seconds
//   ./build/examples/tag_sequences --help
#include <algorithm>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "training.hpp"

namespace nn = xgrad::nn;
namespace optim = xgrad::optim;
using xgrad::Indices;
using xgrad::Var;

namespace {
constexpr std::size_t symbols = 20;
constexpr std::int64_t ignored = -100;  // cross_entropy's and accuracy's default ignore index
constexpr const char* sizes = "--hidden, --batch or --max-length";  // the flags that decide the memory a run needs

struct Batch {
    nn::PaddedIndices ids;   // (T, B) symbol ids, lengths, mask
    nn::PaddedIndices tags;  // (T, B): 1 where the symbol occurs elsewhere in its sequence, -100 past the end
};

Batch make_batch(std::size_t batch, std::size_t min_length, std::size_t max_length, xgrad::Generator& gen) {
    std::vector<Indices> ids, tags;
    for (std::size_t b = 0; b < batch; ++b) {
        const std::size_t length = min_length + gen.below(max_length - min_length + 1);
        Indices x = Indices::from_shape({length}), y = Indices::from_shape({length});
        std::vector<std::size_t> count(symbols, 0);
        for (std::size_t t = 0; t < length; ++t) ++count[x(t) = static_cast<std::int64_t>(gen.below(symbols))];
        for (std::size_t t = 0; t < length; ++t) y(t) = count[static_cast<std::size_t>(x(t))] > 1 ? 1 : 0;
        ids.push_back(std::move(x));
        tags.push_back(std::move(y));
    }
    return {nn::pad_sequences(ids), nn::pad_sequences(tags, false, ignored)};
}

std::shared_ptr<nn::Sequential<float>> make_head(std::size_t in, std::size_t hidden) {
    auto head = std::make_shared<nn::Sequential<float>>();
    head->push_back(std::make_shared<nn::Linear<float>>(in, hidden));
    head->push_back([](const Var<float>& x) { return xgrad::relu(x); });
    head->push_back(std::make_shared<nn::Linear<float>>(hidden, 2));
    return head;
}

struct Tagger : nn::Module<float> {
    Tagger(std::size_t hidden, bool bidirectional)
        : Module("Tagger"),
          rnn(register_module("rnn", std::make_shared<nn::GRU<float>>(
                                         nn::GRUOptions(symbols, hidden).bidirectional(bidirectional).implementation(
                                             nn::RecurrentImplementation::fused)))),
          head(register_module("head", make_head(hidden * (bidirectional ? 2 : 1), hidden))) {}
    // Logits (T, B, 2): one pair per position.
    Var<float> forward(xgrad::Graph<float>& g, const Batch& batch) {
        const Var<float> output = rnn->forward_indices(g, batch.ids.padded, {}, batch.ids.lengths).output;  // (T, B, D·H)
        return head->forward(output);
    }
    std::shared_ptr<nn::GRU<float>> rnn;
    std::shared_ptr<nn::Sequential<float>> head;
};

struct Scores {
    double tokens = 0, sequences = 0;  // per-token accuracy; the share of sequences tagged without a mistake
};

Scores test_scores(Tagger& model, std::size_t min_length, std::size_t max_length, std::size_t count, xgrad::Generator& gen) {
    xgrad::NoGradGuard no_grad;
    double tokens = 0, right_tokens = 0, right_sequences = 0;
    for (std::size_t done = 0; done < count; done += 500) {
        const Batch batch = make_batch(std::min<std::size_t>(500, count - done), min_length, max_length, gen);
        xgrad::Graph<float> g;
        const Var<float> logits = model.forward(g, batch);
        const Indices predicted = xgrad::argmax(logits, -1);  // (T, B)
        const std::size_t B = batch.tags.lengths.size();
        for (std::size_t b = 0; b < B; ++b) {
            bool all = true;
            for (std::size_t t = 0; t < static_cast<std::size_t>(batch.tags.lengths[b]); ++t) all &= predicted(t, b) == batch.tags.padded(t, b);
            right_sequences += all;
        }
        const double counted = static_cast<double>(xt::sum(batch.tags.mask)());
        right_tokens += xgrad::accuracy(logits, batch.tags.padded) * counted;  // -100 (padding) ignored
        tokens += counted;
    }
    return {right_tokens / tokens, right_sequences / static_cast<double>(count)};
}

// One test sequence with its tags: the symbols as letters, '^' under each that occurs elsewhere.
void show_example(Tagger& model, std::size_t length, xgrad::Generator& gen) {
    xgrad::NoGradGuard no_grad;
    const Batch one = make_batch(1, length, length, gen);
    xgrad::Graph<float> g;
    const Indices predicted = xgrad::argmax(model.forward(g, one), -1);
    std::string text, truth, guess;
    for (std::size_t t = 0; t < length; ++t) {
        text += static_cast<char>('a' + one.ids.padded(t, 0));
        truth += one.tags.padded(t, 0) == 1 ? '^' : ' ';
        guess += predicted(t, 0) == 1 ? '^' : ' ';
    }
    fmt::print("  sequence   {}\n  repeated   {}\n  predicted  {}\n", text, truth, guess);
}

int run(int argc, char** argv) {
    CLI::App app("Many-to-many tagging with a bidirectional GRU: does each symbol occur elsewhere in its sequence?");
    examples::TrainingFlags flags{.steps = 4000, .batch = 32, .hidden = 64, .test_size = 2000, .lr = 3e-3};
    examples::LengthFlags lengths{.min_length = 4, .max_length = 24};
    bool unidirectional = false;
    examples::add_training_flags(app, flags);
    examples::add_length_flags(app, lengths, 1);
    app.add_flag("--unidirectional", unidirectional, "left to right only, to see what the reverse direction adds");
    if (auto status = examples::parse_with_lengths(app, argc, argv, "tag_sequences", lengths)) return *status;

    examples::apply_process_flags(flags);
    xgrad::keep_freed_memory();
    xgrad::manual_seed(flags.seed);
    xgrad::Generator data(flags.seed + 1);
    Tagger model(flags.hidden, !unidirectional);
    // Training keeps a whole batch's activations in each direction; testing runs batches of up to 500 twice as long.
    const double directions = unidirectional ? 1 : 2, gates = 3;  // GRU
    const double train_positions = static_cast<double>(lengths.max_length * flags.batch);
    const double test_positions = static_cast<double>(2 * lengths.max_length * std::min<std::size_t>(500, flags.test_size));
    const double activations = directions * std::max(examples::recurrent_floats(train_positions, flags.hidden, gates),
                                                     examples::recurrent_floats(test_positions, flags.hidden, gates, false));
    examples::check_memory("training this model", examples::training_bytes(model.parameter_count(), activations), sizes);
    optim::Adam<float> opt(model.parameters(), optim::AdamOptions(flags.lr));

    fmt::print("{} GRU {} over {} symbols, training lengths {}..{}, batch {}, {} steps\n",
               unidirectional ? "unidirectional" : "bidirectional", flags.hidden, symbols, lengths.min_length, lengths.max_length, flags.batch, flags.steps);
    const std::vector<double> losses = examples::train(flags.steps, opt, "token accuracy", [&](xgrad::Graph<float>& g, bool report) {
        const Batch b = make_batch(flags.batch, lengths.min_length, lengths.max_length, data);
        const Var<float> logits = model.forward(g, b);  // the padding's tags are -100: ignored by both
        return std::pair(xgrad::cross_entropy(logits, b.tags.padded), report ? xgrad::accuracy(logits, b.tags.padded) : 0.0);
    });

    xgrad::Generator test(flags.seed + 2);
    fmt::print("test ({} sequences each), padding ignored:\n", flags.test_size);
    for (const auto& [lo, hi] : std::vector<std::pair<std::size_t, std::size_t>>{{lengths.min_length, lengths.max_length}, {lengths.max_length + 1, 2 * lengths.max_length}}) {
        const Scores s = test_scores(model, lo, hi, flags.test_size, test);
        fmt::print("  lengths {:3d}..{:3d}{}  per token {:6.2f}%   whole sequences right {:6.2f}%\n", lo, hi,
                   lo > lengths.max_length ? " (longer than trained)" : "                      ", 100 * s.tokens, 100 * s.sequences);
    }
    fmt::print("one test sequence:\n");
    show_example(model, lengths.max_length, test);
    return examples::require_loss_below("tag_sequences", losses, flags.require_loss_below);
}
}  // namespace

int main(int argc, char** argv) { return examples::run_guarded("tag_sequences", sizes, [&] { return run(argc, argv); }); }
