// xgrad-charlm train: contiguous streams through the training text, the hidden state carried
// from chunk to chunk (truncated BPTT), periodic validation, atomic checkpoints.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <optional>
#include <unistd.h>

#include <fmt/format.h>

#include "checkpoint.hpp"
#include "outputs.hpp"
#include "training.hpp"

namespace charlm {

namespace {
std::atomic<int> interrupts{0};
extern "C" void on_interrupt(int) {
    // The first signal asks the loop to stop, save and report; a second one means "now".
    if (interrupts.fetch_add(1) > 0) ::_exit(130);
}

// B contiguous streams through the training text; a batch is the next seq characters of each.
class Streams {
  public:
    Streams(const std::vector<std::int64_t>& ids, std::size_t batch, std::size_t seq)
        : ids_(ids), batch_(batch), seq_(seq), length_(ids.size() / batch) {}
    std::size_t length() const { return length_; }
    bool fits(std::size_t position) const { return position + seq_ + 1 <= length_; }
    void fill(std::size_t position, xgrad::Indices& inputs, xgrad::Indices& targets) const {
        for (std::size_t t = 0; t < seq_; ++t) {
            for (std::size_t b = 0; b < batch_; ++b) {
                const std::size_t at = b * length_ + position + t;
                inputs(t, b) = ids_[at];
                targets(t, b) = ids_[at + 1];
            }
        }
    }

  private:
    const std::vector<std::int64_t>& ids_;
    std::size_t batch_, seq_, length_;
};

std::string duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "-";
    const auto s = static_cast<long>(seconds + 0.5);
    return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60) : fmt::format("{}m{:02}s", s / 60, s % 60);
}

std::string bpc_text(double bpc) { return std::isnan(bpc) ? "-" : fmt::format("{:.4f}", bpc); }
}  // namespace

int train(const TrainArgs& args) {
    using clock = std::chrono::steady_clock;
    if (args.time_limit && (!(*args.time_limit > 0) || !std::isfinite(*args.time_limit))) {
        throw InputError(fmt::format("--time-limit {}: must be a positive, finite number of seconds", *args.time_limit));
    }
    if (args.threads > 0) xgrad::set_blas_threads(args.threads);

    std::optional<Checkpoint> resumed;
    Config config = args.config;
    if (!args.resume.empty()) {
        resumed = read_checkpoint(args.resume);
        const Config& saved = resumed->state.config;
        const nlohmann::json given = config.to_json(), stored = saved.to_json();
        for (const std::string& flag : args.explicit_flags) {
            if (given.at(flag) != stored.at(flag)) {
                std::string option = flag;
                std::replace(option.begin(), option.end(), '_', '-');
                throw InputError(fmt::format("--resume {}: the checkpoint has {} {}, but --{} {} was given", args.resume,
                                             flag, stored.at(flag).dump(), option, given.at(flag).dump()));
            }
        }
        const std::string impl = config.impl;  // the one thing a resumed run may change: the same numbers either way
        config = saved;
        if (args.impl_given) config.impl = impl;
    }

    Corpus corpus = load_corpus(args.corpus);
    warn_skipped(corpus, args.corpus);
    check_output_names(args, corpus);
    const Vocabulary vocabulary = Vocabulary::of(corpus.text);
    check_memory(config, vocabulary.size(), corpus.text.size(), "train");
    if (vocabulary.size() < 2) {
        throw InputError(fmt::format("corpus {}: it has a single distinct character ({}): nothing to learn", args.corpus,
                                     describe(vocabulary.symbol(0))));
    }
    const std::vector<std::int64_t> ids = encode(vocabulary, corpus.text);
    const auto val_size = static_cast<std::size_t>(std::floor(static_cast<double>(ids.size()) * config.val_fraction));
    if (config.val_fraction > 0 && val_size < 2) {
        throw InputError(fmt::format("corpus {}: {} characters leave {} for the validation split (--val-fraction {}); "
                                     "it needs at least 2", args.corpus, ids.size(), val_size, config.val_fraction));
    }
    const std::vector<std::int64_t> train_ids(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(val_size));
    const std::vector<std::int64_t> val_ids(ids.end() - static_cast<std::ptrdiff_t>(val_size), ids.end());
    const Streams streams(train_ids, config.batch, config.seq);
    if (!streams.fits(0)) {
        throw InputError(fmt::format("corpus {}: the training part has {} characters, too few for one batch of {} streams "
                                     "of {} + 1 characters (lower --batch or --seq, or use a longer corpus)",
                                     args.corpus, train_ids.size(), config.batch, config.seq));
    }
    if (resumed) {
        if (!(resumed->state.vocabulary == vocabulary)) {
            throw InputError(fmt::format("--resume {}: the corpus has {} distinct characters, the checkpoint's vocabulary {}; "
                                         "resume on the corpus it was trained on", args.resume, vocabulary.size(),
                                         resumed->state.vocabulary.size()));
        }
        if (resumed->state.train_chars != train_ids.size()) {
            throw InputError(fmt::format("--resume {}: the checkpoint was trained on {} training characters, this corpus has {}",
                                         args.resume, resumed->state.train_chars, train_ids.size()));
        }
        if (!streams.fits(resumed->state.data_position)) {
            throw InputError(fmt::format("--resume {}: its data position {} is past the end of the training streams ({} characters)",
                                         args.resume, resumed->state.data_position, streams.length()));
        }
    }

    // Every check above writes nothing; the lock and the probe of --out are the run's first writes.
    const OutputLock lock(args.out);
    probe_output(args.out);
    xgrad::Generator init(config.seed);
    CharLM model(config, vocabulary.size(), init);
    auto optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr);
    TrainingState state{config, vocabulary, 0, 0, train_ids.size(), model.zero_state(config.batch)};
    if (resumed) {
        restore(*resumed, model, optimizer.get());
        state.step = resumed->state.step;
        state.data_position = resumed->state.data_position;
        state.carried = resumed->state.carried;
    }
    const std::int64_t total_steps = args.steps.value_or(args.time_limit ? std::numeric_limits<std::int64_t>::max() : 2000);

    std::ofstream metrics;
    if (!args.metrics.empty()) {
        const bool fresh = !std::filesystem::exists(args.metrics) || !resumed;
        metrics.open(args.metrics, fresh ? std::ios::trunc : std::ios::app);
        if (!metrics) throw InputError(fmt::format("--metrics {}: cannot open for writing", args.metrics));
        if (fresh) metrics << "step,train_loss,train_bpc,val_bpc,chars_per_s,elapsed_s\n";
    }
    std::signal(SIGINT, on_interrupt);  // before the first line, so that whoever reads it can interrupt
    std::signal(SIGTERM, on_interrupt);
    const bool terminal = ::isatty(STDERR_FILENO) != 0;
    fmt::print(stderr, "{} {} characters ({} training, {} validation), vocabulary {}, {} parameters, {}{} steps\n",
               resumed ? "resuming from " + args.resume + ":" : "training on", ids.size(), train_ids.size(), val_ids.size(),
               vocabulary.size(), model.parameter_count(), resumed ? fmt::format("step {} of ", state.step) : "",
               args.steps || !args.time_limit ? std::to_string(total_steps) : "time-limited");

    xgrad::Indices inputs = xgrad::Indices::from_shape({config.seq, config.batch});
    xgrad::Indices targets = xgrad::Indices::from_shape({config.seq, config.batch});
    const auto start = clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - start).count(); };
    const std::int64_t first_step = state.step;
    double train_loss = NAN, val_bpc = NAN;
    std::int64_t evaluated_at = -1, saved_at = -1;  // steps of the last evaluation and save
    auto save = [&] {
        save_checkpoint(args.out, state, model, *optimizer);
        saved_at = state.step;
    };
    std::optional<xgrad::DetectAnomalyGuard> anomaly_checks;
    if (args.detect_anomaly) anomaly_checks.emplace();
    auto kept = [&] {
        return saved_at >= 0 ? fmt::format("{} keeps step {}", args.out, saved_at)
                             : fmt::format("nothing was saved this run{}",
                                           resumed ? ", the resumed checkpoint is untouched" : " (use --save-every)");
    };
    while (state.step < total_steps && !(args.time_limit && elapsed() >= *args.time_limit) && !interrupts) {
        streams.fill(state.data_position, inputs, targets);
        // The step's graph (every activation and the parameters' copies) is freed before evaluating or saving.
        State next;
        double loss = NAN;
        {
            xgrad::Graph<float> g;
            model.zero_grad();
            try {
                Output out = model.forward(g, inputs, state.carried);
                xgrad::Var<float> step_loss = xgrad::cross_entropy(out.logits, targets);
                step_loss.backward();
                loss = step_loss.item();
                next = std::move(out.next);
            } catch (const xgrad::AnomalyError& e) {
                throw std::runtime_error(fmt::format("step {}: {}; {}", state.step + 1, e.what(), kept()));
            }
        }
        const double norm = xgrad::nn::clip_grad_norm(model.parameters(), config.clip);
        if (!std::isfinite(loss) || !std::isfinite(norm)) {
            throw std::runtime_error(fmt::format("step {}: the loss ({}) or the gradient norm ({}) is not finite; {} "
                                                 "(lower --lr, or find the op with --detect-anomaly)", state.step + 1,
                                                 loss, norm, kept()));
        }
        optimizer->step();
        ++state.step;
        state.carried = std::move(next);
        state.data_position += config.seq;
        if (!streams.fits(state.data_position)) {  // a new pass over the text starts from a fresh state
            state.data_position = 0;
            state.carried = model.zero_state(config.batch);
        }
        train_loss = loss;
        const double seconds = elapsed();
        const double chars_per_s = static_cast<double>((state.step - first_step) * static_cast<std::int64_t>(config.batch * config.seq)) / seconds;
        const bool finishing = state.step == total_steps || (args.time_limit && seconds >= *args.time_limit);
        if ((args.eval_every > 0 && state.step % args.eval_every == 0) || finishing) {
            val_bpc = val_ids.empty() ? NAN : bits_per_char(model, val_ids);
            evaluated_at = state.step;
            if (metrics) {
                metrics << fmt::format("{},{:.6f},{:.6f},{},{:.1f},{:.3f}\n", state.step, train_loss,
                                       train_loss / std::numbers::ln2, bpc_text(val_bpc), chars_per_s, elapsed());
                metrics.flush();
            }
        }
        if (args.save_every > 0 && state.step % args.save_every == 0) save();
        double eta = seconds / static_cast<double>(state.step - first_step) * static_cast<double>(total_steps - state.step);
        if (args.time_limit) eta = std::min(eta, *args.time_limit - seconds);
        const std::string line = fmt::format("step {} loss {:.4f} train {:.3f} bpc val {} bpc {:.0f} chars/s ETA {}", state.step,
                                             train_loss, train_loss / std::numbers::ln2, bpc_text(val_bpc), chars_per_s, duration(eta));
        if (terminal) {
            fmt::print(stderr, "\r{:<100}", line);
        } else if (state.step % 100 == 0 || (args.eval_every > 0 && state.step % args.eval_every == 0)) {
            fmt::print(stderr, "{}\n", line);
        }
    }
    if (terminal) fmt::print(stderr, "\n");
    save();  // first: a second Ctrl-C during the evaluation below may end the process at once
    const double seconds = elapsed();
    if (interrupts) fmt::print(stderr, "interrupted: checkpoint saved at step {} (Ctrl-C again to skip the final validation)\n", state.step);
    if (evaluated_at != state.step && !val_ids.empty()) val_bpc = bits_per_char(model, val_ids);
    fmt::print("final validation: {} bits per character\n", bpc_text(val_bpc));
    std::fflush(stdout);  // at once: whoever reads the output learns that the validation finished
    fmt::print("steps {} (this run {}), wall time {:.1f} s, {:.0f} characters/s, {} parameters\n", state.step,
               state.step - first_step, seconds,
               static_cast<double>((state.step - first_step) * static_cast<std::int64_t>(config.batch * config.seq)) / seconds,
               model.parameter_count());
    fmt::print("checkpoint: {}\n", args.out);
    return interrupts ? 130 : 0;
}

}  // namespace charlm
