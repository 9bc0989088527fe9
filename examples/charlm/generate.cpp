// xgrad-charlm sample and eval, and the streamed bits-per-character evaluation train uses too.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>

#include <fmt/format.h>

#include "checkpoint.hpp"
#include "training.hpp"

namespace charlm {

std::vector<std::int64_t> encode(const Vocabulary& vocabulary, std::u32string_view text) {
    std::vector<std::int64_t> ids;
    ids.reserve(text.size());
    for (char32_t c : text) ids.push_back(*vocabulary.index(c));
    return ids;
}

double bits_per_char(CharLM& model, const std::vector<std::int64_t>& ids, const Ranks& ranks) {
    if (ids.size() < 2) throw InputError("evaluation needs at least 2 characters");
    constexpr std::size_t chunk = 256;
    const std::size_t streams = std::clamp<std::size_t>(ids.size() / 1024, 1, 64);
    // Stream b holds ids [begin[b], begin[b + 1]); lengths differ by at most one.
    std::vector<std::size_t> begin(streams + 1, 0);
    for (std::size_t b = 0; b < streams; ++b) begin[b + 1] = begin[b] + ids.size() / streams + (b < ids.size() % streams);
    // This rank's share: streams [first, first + mine).
    const auto rank = static_cast<std::size_t>(ranks.rank()), size = static_cast<std::size_t>(ranks.size());
    const std::size_t first = streams * rank / size, mine = streams * (rank + 1) / size - first;
    std::size_t longest = 0;
    for (std::size_t b = first; b < first + mine; ++b) longest = std::max(longest, begin[b + 1] - begin[b] - 1);

    const bool was_training = model.is_training();
    const auto impl = model.rnn.settings().implementation();
    model.eval();
    model.rnn.settings().implementation(xgrad::nn::RecurrentImplementation::fused);  // same numbers, faster
    xgrad::NoGradGuard no_grad;
    State state = model.zero_state(mine);
    double nats = 0;
    xgrad::CrossEntropyOptions sum;
    sum.reduction(xgrad::CrossEntropyOptions::Reduction::sum);
    for (std::size_t offset = 0; offset < longest; offset += chunk) {
        const std::size_t steps = std::min(chunk, longest - offset);
        xgrad::Indices inputs = xgrad::Indices::from_shape({steps, mine});
        xgrad::Indices targets = xgrad::Indices::from_shape({steps, mine});
        xgrad::Tensor<float> mask = xgrad::Tensor<float>::from_shape({steps, mine});
        std::vector<std::int64_t> lengths(mine);
        for (std::size_t b = 0; b < mine; ++b) {
            const std::size_t predictions = begin[first + b + 1] - begin[first + b] - 1;
            lengths[b] = static_cast<std::int64_t>(std::min(steps, predictions > offset ? predictions - offset : 0));
            for (std::size_t t = 0; t < steps; ++t) {
                const bool valid = static_cast<std::int64_t>(t) < lengths[b];
                const std::size_t at = begin[first + b] + offset + t;
                inputs(t, b) = valid ? ids[at] : 0;
                targets(t, b) = valid ? ids[at + 1] : 0;
                mask(t, b) = valid ? 1.0f : 0.0f;
            }
        }
        xgrad::Graph<float> g;
        Output out = model.forward(g, inputs, state, lengths);
        nats += xgrad::cross_entropy(out.logits, targets, sum, mask).item();
        state = out.next;
    }
    model.train(was_training);
    model.rnn.settings().implementation(impl);
    return ranks.sum(nats) / std::numbers::ln2 / static_cast<double>(ids.size() - streams);
}

std::size_t draw_next(std::span<const float> logits, double temperature, std::size_t top_k, xgrad::Generator& gen) {
    if (!(temperature > 0) || !std::isfinite(temperature)) {
        throw InputError(fmt::format("sampling: temperature {} must be a positive, finite number", temperature));
    }
    if (logits.empty()) throw InputError("sampling: no logits to draw from");
    for (std::size_t k = 0; k < logits.size(); ++k) {
        if (!std::isfinite(logits[k])) throw InputError(fmt::format("sampling: logit {} of character {} is not finite", logits[k], k));
    }
    const std::size_t vocab = logits.size(), kept = top_k == 0 ? vocab : std::min(top_k, vocab);
    std::vector<std::size_t> order(vocab);
    for (std::size_t k = 0; k < vocab; ++k) order[k] = k;
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept), order.end(),
                      [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
    // Softmax at the temperature over the `kept` most likely characters, relative to the largest logit.
    std::vector<double> p(kept);
    double total = 0;
    for (std::size_t k = 0; k < kept; ++k) total += p[k] = std::exp((logits[order[k]] - logits[order[0]]) / temperature);
    if (!std::isfinite(total) || !(total >= 1)) {  // the largest term is exp(0) = 1
        throw InputError(fmt::format("sampling: the probabilities do not sum to a finite positive number ({})", total));
    }
    double r = gen.uniform01() * total;
    for (std::size_t k = 0; k < kept; ++k) {
        r -= p[k];
        if (r < 0) return order[k];
    }
    return order[kept - 1];  // r can survive the loop only by rounding: the last candidate's share
}

namespace {
struct Loaded {
    Checkpoint checkpoint;
    std::unique_ptr<CharLM> model;
};

Loaded load_model(const std::string& path) {
    Loaded l{read_checkpoint(path), nullptr};
    xgrad::Generator unused(0);
    l.model = std::make_unique<CharLM>(l.checkpoint.state.config, l.checkpoint.state.vocabulary.size(), unused);
    restore(l.checkpoint, *l.model, nullptr);
    l.model->eval();
    return l;
}
}  // namespace

int sample(const SampleArgs& args) {
    if (!(args.temperature > 0) || !std::isfinite(args.temperature)) {
        throw InputError(fmt::format("--temperature {}: must be a positive, finite number", args.temperature));
    }
    Loaded l = load_model(args.checkpoint);
    const Vocabulary& vocabulary = l.checkpoint.state.vocabulary;
    CharLM& model = *l.model;
    Utf8Error error;
    auto prime = decode_utf8(args.prime, error);
    if (!prime) throw InputError(fmt::format("--prime: not UTF-8 text: {} at byte offset {}", error.reason, error.offset));
    if (prime->empty()) prime = std::u32string(1, vocabulary.index(U'\n') ? U'\n' : vocabulary.symbol(0));
    for (std::size_t i = 0; i < prime->size(); ++i) {
        if (!vocabulary.index((*prime)[i])) {
            throw InputError(fmt::format("--prime: character {} at position {} is not in the model's vocabulary",
                                         describe((*prime)[i]), i));
        }
    }
    xgrad::NoGradGuard no_grad;
    xgrad::Generator gen(args.seed);
    State state = model.zero_state(1);
    if (!args.prime.empty()) std::fputs(args.prime.c_str(), stdout);
    // Feed all of the prime but its last character, then generate one character at a time.
    std::vector<std::int64_t> ids = encode(vocabulary, *prime);
    std::int64_t current = ids.back();
    if (ids.size() > 1) {
        xgrad::Indices context = xgrad::Indices::from_shape({ids.size() - 1, 1});
        std::copy(ids.begin(), ids.end() - 1, context.begin());
        xgrad::Graph<float> g;
        state = model.forward(g, context, state).next;
    }
    for (std::size_t n = 0; n < args.length; ++n) {
        xgrad::Graph<float> g;
        xgrad::Indices input = xgrad::Indices::from_shape({1, 1});
        input(0, 0) = current;
        Output out = model.forward(g, input, state);
        state = out.next;
        const std::size_t pick =
            draw_next(std::span<const float>(out.logits.value().data(), vocabulary.size()), args.temperature, args.top_k, gen);
        current = static_cast<std::int64_t>(pick);
        std::fputs(encode_utf8(std::u32string(1, vocabulary.symbol(pick))).c_str(), stdout);
        if (n % 64 == 63) std::fflush(stdout);
    }
    std::fputs("\n", stdout);
    return 0;
}

int evaluate(const EvalArgs& args) {
    Loaded l = load_model(args.checkpoint);
    const Vocabulary& vocabulary = l.checkpoint.state.vocabulary;
    Corpus corpus = load_corpus(args.corpus);
    warn_skipped(corpus, args.corpus);
    std::u32string known;
    std::size_t unknown = 0;
    for (char32_t c : corpus.text) {
        if (vocabulary.index(c)) {
            known.push_back(c);
        } else {
            ++unknown;
        }
    }
    if (known.size() < 2) {
        throw InputError(fmt::format("corpus {}: fewer than 2 characters from the model's vocabulary", args.corpus));
    }
    const double bpc = bits_per_char(*l.model, encode(vocabulary, known));
    fmt::print("{:.4f} bits per character over {} characters of {}\n", bpc, known.size(), args.corpus);
    if (unknown > 0) {
        fmt::print("{} characters outside the model's vocabulary were left out\n", unknown);
    }
    return 0;
}

}  // namespace charlm
