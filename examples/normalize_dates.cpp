// Sequence to sequence with attention: dates written in nine ways ("Saturday, March 7, 1987",
// "7 mar 87", "07.03.1987", "1987/3/7", ...) rewritten as ISO 8601 ("1987-03-07"), character by
// character. A bidirectional GRU encodes the padded input; a GRUCell decoder attends over the
// encoder's outputs (Bahdanau's additive attention, padding masked) at every step. Training uses
// teacher forcing; evaluation decodes greedily and with beam search, reports exact-match accuracy
// for both, and prints one example's attention weights as text.
//
//   ./build/examples/normalize_dates                 # under a minute
//   ./build/examples/normalize_dates --help
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xtensor/xview.hpp>

#include <xgrad/xgrad.hpp>

#include "training.hpp"

namespace nn = xgrad::nn;
namespace optim = xgrad::optim;
using xgrad::Indices;
using xgrad::Tensor;
using xgrad::Var;

namespace {
// ---- the data ----
constexpr std::array<const char*, 12> months = {"January", "February", "March",     "April",   "May",      "June",
                                                "July",    "August",   "September", "October", "November", "December"};
constexpr std::array<const char*, 7> weekdays = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::size_t formats = 9;
constexpr std::size_t longest_text = 29;  // "Wednesday, September 30, 2024"
constexpr const char* sizes = "--hidden or --batch";  // the flags that decide the memory a run needs

struct Example {
    std::string text, iso;
    std::size_t format;
};

// A day between 1950-01-01 and 2049-12-31 (two-digit years are read as 1950..2049), written in format f.
Example make_example(xgrad::Generator& gen, std::size_t f) {
    using namespace std::chrono;
    const sys_days first = year{1950} / January / 1, last = year{2049} / December / 31;
    const sys_days day = first + days{static_cast<int>(gen.below(static_cast<std::uint64_t>((last - first).count() + 1)))};
    const year_month_day ymd(day);
    const int y = static_cast<int>(ymd.year());
    const unsigned m = static_cast<unsigned>(ymd.month()), d = static_cast<unsigned>(ymd.day());
    const std::string month = months[m - 1], mon = month.substr(0, 3);
    std::string lower_mon = mon;
    lower_mon[0] = static_cast<char>(lower_mon[0] - 'A' + 'a');
    const std::string day_name = weekdays[weekday(day).c_encoding()];
    const std::array<std::string, formats> written = {
        fmt::format("{} {} {}", d, month, y),
        fmt::format("{} {}, {}", month, d, y),
        fmt::format("{:02}.{:02}.{}", d, m, y),
        fmt::format("{} {} {}", mon, d, y),
        fmt::format("{} {} {:02}", d, lower_mon, y % 100),
        fmt::format("{}/{}/{}", y, m, d),
        fmt::format("{}, {} {}, {}", day_name, month, d, y),
        fmt::format("{}/{}/{:02}", d, m, y % 100),
        fmt::format("{}-{:02}-{:02}", y, m, d),
    };
    return {written[f], fmt::format("{}-{:02}-{:02}", y, m, d), f};
}

// Input characters map to 1..; 0 is padding. Output tokens: the 11 characters of an ISO date, then start and end.
const std::string input_chars = " ,./-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const std::string output_chars = "0123456789-";
constexpr std::int64_t start_token = 11, end_token = 12;
constexpr std::size_t output_vocab = 13, output_length = 11;  // 10 characters and the end

Indices encode_input(const std::string& text) {
    Indices ids = Indices::from_shape({text.size()});
    for (std::size_t i = 0; i < text.size(); ++i) ids(i) = static_cast<std::int64_t>(input_chars.find(text[i]) + 1);
    return ids;
}

std::string decode_output(const std::vector<std::int64_t>& tokens) {
    std::string text;
    for (const std::int64_t t : tokens) {
        if (t == end_token) break;
        const auto at = static_cast<std::size_t>(t);
        text += at < output_chars.size() ? output_chars[at] : '?';  // greedy decoding of an untrained model may emit the start token
    }
    return text;
}

struct Batch {
    std::vector<Example> examples;
    nn::PaddedIndices source;  // (B, T) character ids, batch first; mask (B, T)
    Indices target;            // (11, B): the ISO characters, then the end token
};

Batch make_batch(std::vector<Example> examples) {
    const std::size_t B = examples.size();
    Batch b{std::move(examples), {}, Indices::from_shape({output_length, B})};
    std::vector<Indices> sources;
    for (std::size_t i = 0; i < b.examples.size(); ++i) {
        sources.push_back(encode_input(b.examples[i].text));
        for (std::size_t t = 0; t + 1 < output_length; ++t) {
            b.target(t, i) = static_cast<std::int64_t>(output_chars.find(b.examples[i].iso[t]));
        }
        b.target(output_length - 1, i) = end_token;
    }
    b.source = nn::pad_sequences(sources, /*batch_first=*/true);
    return b;
}

std::vector<Example> random_examples(std::size_t n, xgrad::Generator& gen) {
    std::vector<Example> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(make_example(gen, gen.below(formats)));
    return out;
}

// ---- the model ----
struct DecoderState {
    Var<float> h;        // (B, decoder hidden)
    Var<float> context;  // (B, 2 H): the last attention's context, fed to the next step
};

struct Seq2Seq : nn::Module<float> {
    Seq2Seq(std::size_t hidden)
        : Module("Seq2Seq"),
          encoder(register_module("encoder", std::make_shared<nn::GRU<float>>(nn::GRUOptions(input_chars.size() + 1, hidden)
                                                                                   .bidirectional(true)
                                                                                   .batch_first(true)
                                                                                   .implementation(nn::RecurrentImplementation::fused)))),
          bridge(register_module("bridge", std::make_shared<nn::Linear<float>>(2 * hidden, 2 * hidden))),
          embed(register_module("embed", std::make_shared<nn::Embedding<float>>(output_vocab, 32))),
          cell(register_module("cell", std::make_shared<nn::GRUCell<float>>(nn::GRUCellOptions(32 + 2 * hidden, 2 * hidden)))),
          attention(register_module("attention", std::make_shared<nn::AdditiveAttention<float>>(2 * hidden, 2 * hidden, hidden))),
          out(register_module("out", std::make_shared<nn::Linear<float>>(4 * hidden, output_vocab))) {}

    struct Encoded {
        Var<float> keys;         // (B, T, 2 H)
        xgrad::Mask mask;   // (B, T): the real characters
        DecoderState start;
    };
    Encoded encode(xgrad::Graph<float>& g, const nn::PaddedIndices& source) {
        const auto r = encoder->forward_indices(g, source.padded, {}, source.lengths);
        const Var<float> both = xgrad::concat({xgrad::select(r.h_n, 0, 0), xgrad::select(r.h_n, 0, 1)}, -1);  // (B, 2 H)
        const Var<float> h0 = xgrad::tanh(bridge->forward(both));
        Tensor<float> zeros = Tensor<float>::from_shape({source.lengths.size(), h0.shape()[1]});
        zeros.fill(0.0f);
        return {r.output, source.mask, {h0, g.constant(zeros)}};
    }
    // One decoder step from the previous tokens (B,): the logits (B, 13), the next state and the attention weights (B, T).
    struct Step {
        Var<float> logits;
        DecoderState state;
        Var<float> weights;
    };
    Step decode_step(xgrad::Graph<float>& g, const Encoded& e, const DecoderState& s, const Indices& previous) {
        const Var<float> input = xgrad::concat({embed->forward(g, previous), s.context}, -1);
        const Var<float> h = cell->forward(input, s.h);
        const auto [context, weights] = attention->forward(h, e.keys, e.keys, e.mask);
        return {out->forward(xgrad::concat({h, context}, -1)), {h, context}, weights};
    }
    // Teacher forcing: the logits (11, B, 13) of every target token given the true ones before it.
    Var<float> forward(xgrad::Graph<float>& g, const Batch& b) {
        const Encoded e = encode(g, b.source);
        DecoderState s = e.start;
        Indices previous = Indices::from_shape({b.examples.size()});
        previous.fill(start_token);
        std::vector<Var<float>> logits;
        for (std::size_t t = 0; t < output_length; ++t) {
            Step next = decode_step(g, e, s, previous);
            logits.push_back(next.logits);
            s = next.state;
            previous = xt::row(b.target, static_cast<std::ptrdiff_t>(t));
        }
        return xgrad::stack(logits, 0);
    }

    std::shared_ptr<nn::GRU<float>> encoder;
    std::shared_ptr<nn::Linear<float>> bridge;
    std::shared_ptr<nn::Embedding<float>> embed;
    std::shared_ptr<nn::GRUCell<float>> cell;
    std::shared_ptr<nn::AdditiveAttention<float>> attention;
    std::shared_ptr<nn::Linear<float>> out;
};

// ---- decoding ----
// Greedy decoding of a batch: each step's most likely token. Returns the outputs and, for
// `record`, the attention weights of example 0 at every step.
std::vector<std::string> greedy(Seq2Seq& model, const Batch& b, std::vector<std::vector<float>>* record = nullptr) {
    xgrad::NoGradGuard no_grad;
    xgrad::Graph<float> g;
    const auto e = model.encode(g, b.source);
    DecoderState s = e.start;
    const std::size_t B = b.examples.size();
    Indices previous = Indices::from_shape({B});
    previous.fill(start_token);
    std::vector<std::vector<std::int64_t>> tokens(B);
    for (std::size_t t = 0; t < output_length; ++t) {
        const auto next = model.decode_step(g, e, s, previous);
        previous = xgrad::argmax(next.logits, -1);
        for (std::size_t i = 0; i < B; ++i) tokens[i].push_back(previous(i));
        if (record) {
            const auto row = xt::row(next.weights.value(), 0);
            record->emplace_back(row.begin(), row.end());
        }
        s = next.state;
    }
    std::vector<std::string> texts;
    for (const auto& t : tokens) texts.push_back(decode_output(t));
    return texts;
}

// Beam search for one example: up to `width` prefixes, alive and finished together, the most likely
// by their sum of log-probabilities (every output has the same length here, so no length
// normalisation), the alive ones run as one batch; a prefix that emits the end token is finished.
// Returns the most likely finished one.
std::string beam_search(Seq2Seq& model, const Example& example, std::size_t width) {
    xgrad::NoGradGuard no_grad;
    xgrad::Graph<float> g;
    const Batch one = make_batch({example});
    auto e = model.encode(g, one.source);
    // Every prefix reads the same encoding: repeat it `width` times along the batch.
    e.keys = xgrad::concat(std::vector<Var<float>>(width, e.keys), 0);
    xgrad::Mask mask = xgrad::Mask::from_shape({width, e.mask.shape(1)});
    for (std::size_t k = 0; k < width; ++k) xt::row(mask, static_cast<std::ptrdiff_t>(k)) = xt::row(e.mask, 0);
    e.mask = std::move(mask);
    struct Prefix {
        std::vector<std::int64_t> tokens;
        double score;
    };
    std::vector<Prefix> alive = {{{}, 0.0}};  // one prefix at first; its row is repeated to fill the batch
    std::vector<Prefix> finished;
    Indices parent = Indices::from_shape({width});
    parent.fill(0);
    // embedding(rows, indices) gathers rows: here every batch row starts from the one encoding.
    DecoderState s{xgrad::embedding(e.start.h, parent), xgrad::embedding(e.start.context, parent)};
    for (std::size_t t = 0; t < output_length && !alive.empty(); ++t) {
        Indices previous = Indices::from_shape({width});  // rows past the live prefixes repeat the last one
        for (std::size_t k = 0; k < width; ++k) {
            const Prefix& p = alive[std::min(k, alive.size() - 1)];
            previous(k) = p.tokens.empty() ? start_token : p.tokens.back();
        }
        const auto next = model.decode_step(g, e, s, previous);
        const Tensor<float> logp = xgrad::log_softmax(next.logits, -1).value();
        struct Candidate {
            double score;
            std::size_t from;
            std::int64_t token;
        };
        std::vector<Candidate> candidates;
        for (std::size_t k = 0; k < alive.size(); ++k) {
            for (std::size_t v = 0; v < output_vocab; ++v) {
                if (static_cast<std::int64_t>(v) == start_token) continue;  // never an output
                candidates.push_back({alive[k].score + logp(k, v), k, static_cast<std::int64_t>(v)});
            }
        }
        std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
        std::vector<Prefix> kept;
        std::vector<std::int64_t> rows;
        for (const Candidate& c : candidates) {
            if (kept.size() + finished.size() >= width) break;
            Prefix p{alive[c.from].tokens, c.score};
            p.tokens.push_back(c.token);
            if (c.token == end_token || p.tokens.size() == output_length) {
                finished.push_back(std::move(p));
            } else {
                kept.push_back(std::move(p));
                rows.push_back(static_cast<std::int64_t>(c.from));
            }
        }
        alive = std::move(kept);
        for (std::size_t k = 0; k < width; ++k) parent(k) = rows.empty() ? 0 : rows[std::min(k, rows.size() - 1)];
        s = {xgrad::embedding(next.state.h, parent), xgrad::embedding(next.state.context, parent)};  // each kept prefix's state
    }
    const auto best = std::max_element(finished.begin(), finished.end(), [](const Prefix& a, const Prefix& b) { return a.score < b.score; });
    return best == finished.end() ? std::string() : decode_output(best->tokens);
}

// The attention weights of one example as text: a row per output character, a column per input
// character, darker for more weight.
void print_attention(const std::string& input, const std::string& output, const std::vector<std::vector<float>>& weights) {
    const std::string shades = " .:-=+*#%@";
    fmt::print("      {}\n", input);
    for (std::size_t t = 0; t < output.size() + 1 && t < weights.size(); ++t) {
        std::string row;
        for (std::size_t j = 0; j < input.size(); ++j) {
            row += shades[std::min<std::size_t>(shades.size() - 1, static_cast<std::size_t>(weights[t][j] * static_cast<float>(shades.size())))];
        }
        fmt::print("  {:>3} {}\n", t < output.size() ? std::string(1, output[t]) : std::string("end"), row);
    }
}

// Floats a batch of B examples keeps: the bidirectional GRU encoder over the text, the GRU cell of
// 2 H over the output, and additive attention's (B, T, H) terms at each output step.
double seq2seq_floats(double batch, std::size_t hidden, bool backward) {
    const double steps = static_cast<double>(output_length), text = static_cast<double>(longest_text), gates = 3;
    return 2 * examples::recurrent_floats(text * batch, hidden, gates, backward) +
           examples::recurrent_floats(steps * batch, 2 * hidden, gates, backward) +
           steps * batch * text * static_cast<double>(hidden) * (backward ? 4 : 2);
}

int run(int argc, char** argv) {
    CLI::App app("Sequence to sequence with attention: dates written nine ways, rewritten as ISO 8601");
    examples::TrainingFlags flags{.steps = 3000, .batch = 64, .hidden = 64, .test_size = 1000, .lr = 3e-3};
    std::size_t beam_width = 4;
    examples::add_training_flags(app, flags);
    app.add_option("--beam-width", beam_width, "prefixes kept by beam search")->check(CLI::Range(std::size_t{1}, std::size_t{64}))->capture_default_str();
    if (auto status = examples::parse_command_line(app, argc, argv, "normalize_dates")) return *status;

    examples::apply_process_flags(flags);
    xgrad::keep_freed_memory();
    xgrad::manual_seed(flags.seed);
    xgrad::Generator data(flags.seed + 1);
    Seq2Seq model(flags.hidden);
    const double activations = std::max(seq2seq_floats(static_cast<double>(flags.batch), flags.hidden, true),
                                        seq2seq_floats(static_cast<double>(std::min<std::size_t>(500, flags.test_size)), flags.hidden, false));
    examples::check_memory("training this model", examples::training_bytes(model.parameter_count(), activations), sizes);
    optim::Adam<float> opt(model.parameters(), optim::AdamOptions(flags.lr));
    optim::CosineWarmupLR<float> schedule(opt, flags.steps / 20, flags.steps, flags.lr / 20);

    fmt::print("bidirectional GRU {} encoder, GRUCell {} decoder with additive attention, batch {}, {} steps\n", flags.hidden,
               2 * flags.hidden, flags.batch, flags.steps);
    for (std::size_t f = 0; f < formats; ++f) fmt::print("  format {}: {}\n", f, make_example(data, f).text);
    const auto losses = examples::train(
        flags.steps, opt, "token accuracy",
        [&](xgrad::Graph<float>& g, bool report) {
            const Batch b = make_batch(random_examples(flags.batch, data));
            const Var<float> logits = model.forward(g, b);
            return std::pair(xgrad::cross_entropy(logits, b.target), report ? xgrad::accuracy(logits, b.target) : 0.0);
        },
        [&] { schedule.step(); });

    xgrad::Generator test_data(flags.seed + 2);
    const std::vector<Example> test = random_examples(flags.test_size, test_data);
    std::size_t greedy_right = 0, beam_right = 0;
    std::array<std::size_t, formats> per_format{}, per_format_right{};
    std::vector<std::string> mistakes;
    for (std::size_t done = 0; done < test.size(); done += 500) {
        const Batch b = make_batch(std::vector<Example>(test.begin() + static_cast<std::ptrdiff_t>(done),
                                                        test.begin() + static_cast<std::ptrdiff_t>(std::min(test.size(), done + 500))));
        const auto outputs = greedy(model, b);
        for (std::size_t i = 0; i < outputs.size(); ++i) {
            const Example& ex = b.examples[i];
            ++per_format[ex.format];
            if (outputs[i] == ex.iso) {
                ++greedy_right;
                ++per_format_right[ex.format];
            } else if (mistakes.size() < 5) {
                mistakes.push_back(fmt::format("{:>30} -> {} (expected {})", ex.text, outputs[i], ex.iso));
            }
        }
    }
    for (const Example& ex : test) beam_right += beam_search(model, ex, beam_width) == ex.iso;
    const double n = static_cast<double>(test.size());
    fmt::print("test exact match ({} dates): greedy {:.2f}%, beam search (width {}) {:.2f}%\n", test.size(),
               100.0 * static_cast<double>(greedy_right) / n, beam_width, 100.0 * static_cast<double>(beam_right) / n);
    fmt::print("greedy by format:");
    for (std::size_t f = 0; f < formats; ++f) {
        fmt::print(" {}: {:.1f}%", f, 100.0 * static_cast<double>(per_format_right[f]) / static_cast<double>(std::max<std::size_t>(1, per_format[f])));
    }
    fmt::print("\n");
    for (const auto& m : mistakes) fmt::print("  mistake: {}\n", m);

    xgrad::Generator shown(flags.seed + 3);
    const Batch one = make_batch({make_example(shown, 6)});
    std::vector<std::vector<float>> weights;
    const std::string output = greedy(model, one, &weights)[0];
    fmt::print("attention while writing \"{}\" for \"{}\":\n", output, one.examples[0].text);
    print_attention(one.examples[0].text, output, weights);
    return examples::require_loss_below("normalize_dates", losses, flags.require_loss_below);
}
}  // namespace

int main(int argc, char** argv) { return examples::run_guarded("normalize_dates", sizes, [&] { return run(argc, argv); }); }
