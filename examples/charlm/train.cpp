// xgrad-charlm train: contiguous streams through the training text, the hidden state carried
// from chunk to chunk (truncated BPTT), periodic validation, atomic checkpoints.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numbers>
#include <optional>
#include <unistd.h>

#include <fmt/format.h>

#include "../guards.hpp"
#include "checkpoint.hpp"
#include "memory_estimate.hpp"
#include "outputs.hpp"
#include "progress.hpp"
#include "ranks.hpp"
#include "training.hpp"

namespace charlm {

namespace {
std::atomic<int> interrupts{0};
extern "C" void on_interrupt(int) {
    // The first signal asks the loop to stop, save and report; a second one means "now".
    if (interrupts.fetch_add(1) > 0) ::_exit(130);
}

// B contiguous streams through the training text; a batch is the next seq characters of each.
// Over several ranks, each fills its share of the streams, from `first` on.
class Streams {
  public:
    Streams(const std::vector<std::int64_t>& ids, std::size_t batch, std::size_t seq)
        : ids_(ids), seq_(seq), length_(ids.size() / batch) {}
    std::size_t length() const { return length_; }
    bool fits(std::size_t position) const { return position + seq_ + 1 <= length_; }
    // inputs and targets (seq, streams of this rank).
    void fill(std::size_t position, std::size_t first, xgrad::Indices& inputs, xgrad::Indices& targets) const {
        for (std::size_t t = 0; t < seq_; ++t) {
            for (std::size_t b = 0; b < inputs.shape(1); ++b) {
                const std::size_t at = (first + b) * length_ + position + t;
                inputs(t, b) = ids_[at];
                targets(t, b) = ids_[at + 1];
            }
        }
    }

  private:
    const std::vector<std::int64_t>& ids_;
    std::size_t seq_, length_;
};

// One run of `train`, in four parts: preparation (every check, then the lock, the model and the
// optimizer), a training step, an evaluation, and reporting.
class TrainingRun {
  public:
    using Clock = std::chrono::steady_clock;

    TrainingRun(const TrainArgs& args, Ranks& ranks) : args_(args), ranks_(ranks), config_(resolve_config()) {
        const auto size = static_cast<std::size_t>(ranks_.size());
        if (config_.batch % size != 0) {
            throw InputError(fmt::format("--batch {} is not divisible by the {} ranks: each rank runs --batch / ranks streams",
                                         config_.batch, size));
        }
        local_batch_ = config_.batch / size;
        first_stream_ = local_batch_ * static_cast<std::size_t>(ranks_.rank());
        Corpus corpus = load_corpus(args_.corpus);
        if (ranks_.rank() == 0) warn_skipped(corpus, args_.corpus);
        check_output_names(args_, corpus);
        out_ = resolve_output(args_.out);
        vocabulary_ = Vocabulary::of(corpus.text);
        check_memory(config_, vocabulary_.size(), corpus.text.size(), "train");
        split(corpus);
        check_resume();
        xgrad::Generator init(config_.seed);
        model_ = std::make_unique<CharLM>(config_, vocabulary_.size(), init);
        optimizer_ = make_optimizer(config_.optimizer, model_->parameters(), config_.lr);
        state_ = {config_, vocabulary_, 0, 0, train_ids_.size(), model_->zero_state(local_batch_)};
        if (resumed_) {
            restore(*resumed_, *model_, optimizer_.get());
            state_.step = resumed_->state.step;
            state_.data_position = resumed_->state.data_position;
            // The checkpoint holds every stream's state, so it resumes on any number of ranks.
            state_.carried = rows_of(resumed_->state.carried, first_stream_, local_batch_);
        }
        total_steps_ = args_.steps.value_or(args_.time_limit ? std::numeric_limits<std::int64_t>::max() : 2000);
        inputs_ = xgrad::Indices::from_shape({config_.seq, local_batch_});
        targets_ = xgrad::Indices::from_shape({config_.seq, local_batch_});
    }

    // Every rank must start from the same text, resumed state and schedule: each reads --corpus and
    // --resume itself (on several hosts, its own copies), and a rank whose step, schedule or
    // optimizer state differed would reach other collectives than the rest (a hang) or drift apart.
    // The model's names and shapes would show none of that.
    void check_same_start() const {
        if (!ranks_.distributed()) return;
        std::uint64_t hash = 14695981039346656037ULL;  // FNV-1a
        auto mix = [&hash](const auto* bytes, std::size_t n) {
            const auto* p = reinterpret_cast<const unsigned char*>(bytes);
            for (std::size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 1099511628211ULL;
        };
        for (const auto* ids : {&train_ids_, &val_ids_}) mix(ids->data(), ids->size() * sizeof(std::int64_t));
        mix(vocabulary_.symbols().data(), vocabulary_.symbols().size() * sizeof(char32_t));
        if (resumed_) {
            for (const auto& [name, value] : resumed_->file.tensors) mix(value.data(), value.size() * sizeof(float));
        }
        const std::string text = fmt::format("text hash {:016x}; step {}, data position {}; configuration {}; steps {}, "
                                             "eval every {}, save every {}, time limit {}",
                                             hash, state_.step, state_.data_position, config_.to_json().dump(), total_steps_,
                                             args_.eval_every, args_.save_every, args_.time_limit.value_or(0.0));
        const std::vector<std::string> all = ranks_.all_gather_text(text);
        for (std::size_t r = 1; r < all.size(); ++r) {
            if (all[r] != all[0]) {
                throw SameOnEveryRank(fmt::format("rank {} starts from {}, rank 0 from {}: every rank must read the same --corpus "
                                                  "and --resume, with the same flags", r, all[r], all[0]));
            }
        }
    }

    // Once every rank's checks passed (nothing above writes): the run's first writes, rank 0's
    // alone (it writes the checkpoints and the metrics): the lock, the probe of --out, --metrics.
    void open_outputs() {
        if (ranks_.rank() != 0) return;
        lock_.emplace(args_.out, out_);
        probe_output(args_.out, out_);
        open_metrics();
    }

    // Once every rank is ready: the replicas made identical (a collective). A model that differs
    // between ranks is refused on every rank alike.
    void start_ranks() {
        try {
            ranks_.start(*model_);
        } catch (const std::invalid_argument& e) {
            throw SameOnEveryRank(e.what());
        }
    }

    TrainingRun(const TrainingRun&) = delete;  // streams_ refers into train_ids_
    TrainingRun& operator=(const TrainingRun&) = delete;

    int run() {
        if (ranks_.rank() == 0) print_start();
        start_ = Clock::now();
        first_step_ = state_.step;
        std::optional<xgrad::DetectAnomalyGuard> anomaly_checks;
        if (args_.detect_anomaly) anomaly_checks.emplace();
        Agreement agreed = agree(0.0);
        bool done = agreed.done, interrupted = agreed.interrupted;
        while (!done && !interrupted) {
            const double local_loss = step();
            const double seconds = elapsed();  // rates and ETA from here: training time, not evaluation or saving
            agreed = agree(local_loss);
            train_loss_ = agreed.mean_loss;
            done = agreed.done;
            interrupted = agreed.interrupted;
            if ((args_.eval_every > 0 && state_.step % args_.eval_every == 0) || done) evaluate(seconds);
            if (args_.save_every > 0 && state_.step % args_.save_every == 0) save();
            if (ranks_.rank() == 0) report_progress(seconds, done || interrupted);
        }
        return finish(interrupted);
    }

  private:
    void print_start() const {
        fmt::print(stderr, "GEMMs: {}; xgrad's kernels: {}; threads: {}\n", xgrad::gemm_provider(), xgrad::isa_name(xgrad::cpu_isa()),
                   xgrad::threads_governed() ? fmt::format("{}, or one where one runs the steps faster (--threads keeps a count)",
                                                           xgrad::blas_threads())
                                             : std::to_string(xgrad::blas_threads()));
        if (ranks_.size() > 1) fmt::print(stderr, "{} ranks, {} streams each\n", ranks_.size(), local_batch_);
        fmt::print(stderr, "{} {} characters ({} training, {} validation), vocabulary {}, {} parameters, {}{} steps{}\n",
                   resumed_ ? "resuming from " + args_.resume + ":" : "training on", train_ids_.size() + val_ids_.size(),
                   train_ids_.size(), val_ids_.size(), vocabulary_.size(), model_->parameter_count(),
                   resumed_ ? fmt::format("step {} of ", state_.step) : "",
                   args_.steps || !args_.time_limit ? std::to_string(total_steps_) : "time-limited",
                   config_.checkpoint_segment > 0 && config_.checkpoint_segment < config_.seq
                       ? fmt::format(", activations checkpointed every {} steps", config_.checkpoint_segment)
                       : "");
    }

    // The configuration: the flags', or a resumed checkpoint's (which flags given explicitly must match).
    Config resolve_config() {
        if (args_.time_limit && (!(*args_.time_limit > 0) || !std::isfinite(*args_.time_limit))) {
            throw InputError(fmt::format("--time-limit {}: must be a positive, finite number of seconds", *args_.time_limit));
        }
        if (args_.threads > 0) xgrad::set_blas_threads(args_.threads);
        Config config = args_.config;
        if (args_.resume.empty()) return with_segment(config);
        resumed_ = read_checkpoint(args_.resume);
        const nlohmann::json given = config.to_json(), stored = resumed_->state.config.to_json();
        for (const std::string& flag : args_.explicit_flags) {
            if (given.at(flag) != stored.at(flag)) {
                std::string option = flag;
                std::replace(option.begin(), option.end(), '_', '-');
                throw InputError(fmt::format("--resume {}: the checkpoint has {} {}, but --{} {} was given", args_.resume,
                                             flag, stored.at(flag).dump(), option, given.at(flag).dump()));
            }
        }
        Config saved = resumed_->state.config;
        if (args_.impl_given) saved.impl = config.impl;  // the one thing a resumed run may change: the same numbers either way
        saved.checkpoint_segment = config.checkpoint_segment;  // how steps run, not part of the checkpoint
        saved.validate("--resume " + args_.resume);
        return with_segment(saved);
    }

    // --checkpoint-activations without --checkpoint-segment: segments of ceil(sqrt(seq)) steps, which
    // balance the states kept between segments against one segment's activations.
    Config with_segment(Config config) const {
        if (args_.checkpoint_activations && config.checkpoint_segment == 0) {
            config.checkpoint_segment = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(config.seq))));
        }
        config.validate("train");
        return config;
    }

    // The text as indices, its last val_fraction held out; the training part as B streams.
    void split(const Corpus& corpus) {
        if (vocabulary_.size() < 2) {
            throw InputError(fmt::format("corpus {}: it has a single distinct character ({}): nothing to learn", args_.corpus,
                                         describe(vocabulary_.symbol(0))));
        }
        std::vector<std::int64_t> ids = encode(vocabulary_, corpus.text);
        const auto val_size = static_cast<std::size_t>(std::floor(static_cast<double>(ids.size()) * config_.val_fraction));
        if (config_.val_fraction > 0 && val_size < 2) {
            throw InputError(fmt::format("corpus {}: {} characters leave {} for the validation split (--val-fraction {}); "
                                         "it needs at least 2", args_.corpus, ids.size(), val_size, config_.val_fraction));
        }
        val_ids_.assign(ids.end() - static_cast<std::ptrdiff_t>(val_size), ids.end());
        ids.resize(ids.size() - val_size);
        train_ids_ = std::move(ids);
        streams_.emplace(train_ids_, config_.batch, config_.seq);
        if (!streams_->fits(0)) {
            throw InputError(fmt::format("corpus {}: the training part has {} characters, too few for one batch of {} streams "
                                         "of {} + 1 characters (lower --batch or --seq, or use a longer corpus)",
                                         args_.corpus, train_ids_.size(), config_.batch, config_.seq));
        }
    }

    // A resumed checkpoint must have been trained on this very text.
    void check_resume() const {
        if (!resumed_) return;
        const TrainingState& saved = resumed_->state;
        if (!(saved.vocabulary == vocabulary_)) {
            throw InputError(fmt::format("--resume {}: the corpus has {} distinct characters, the checkpoint's vocabulary {}; "
                                         "resume on the corpus it was trained on", args_.resume, vocabulary_.size(),
                                         saved.vocabulary.size()));
        }
        if (saved.train_chars != train_ids_.size()) {
            throw InputError(fmt::format("--resume {}: the checkpoint was trained on {} training characters, this corpus has {}",
                                         args_.resume, saved.train_chars, train_ids_.size()));
        }
        if (!streams_->fits(saved.data_position)) {
            throw InputError(fmt::format("--resume {}: its data position {} is past the end of the training streams ({} characters)",
                                         args_.resume, saved.data_position, streams_->length()));
        }
    }

    void open_metrics() {
        if (args_.metrics.empty()) return;
        metrics_.emplace(args_.metrics, !std::filesystem::exists(args_.metrics) || !resumed_);
    }

    // One step: forward, backward, clipping and the update on the next seq characters of every stream.
    double step() {
        streams_->fill(state_.data_position, first_stream_, inputs_, targets_);
        // Rank 0 keeps the generator a single process would have (so mpirun -np 1 is one process);
        // the others draw masks of their own, from the seed, their rank and the step.
        if (ranks_.rank() > 0) model_->rnn.dropout_generator().seed(rank_seed(config_.seed, ranks_.rank(), state_.step));
        // The step's graph (every activation and the parameters' copies) is freed before evaluating or saving.
        State next;
        double loss = NAN;
        {
            xgrad::Graph<float> g;
            model_->zero_grad();
            try {
                CharLM::Loss step_loss = model_->training_loss(g, inputs_, targets_, state_.carried, config_.checkpoint_segment);
                step_loss.loss.backward();
                loss = step_loss.loss.item();
                next = std::move(step_loss.next);
            } catch (const xgrad::AnomalyError& e) {
                throw std::runtime_error(fmt::format("step {}: {}; {}", state_.step + 1, e.what(), last_good_state()));
            }
        }
        // Each rank's gradients are means over its equal share of the batch: their means over the
        // ranks are the whole batch's.
        ranks_.average_gradients();
        allreduce_seconds_ += ranks_.last_allreduce_seconds();
        const double norm = xgrad::nn::clip_grad_norm(model_->parameters(), config_.clip);
        // The norm is the same on every rank (a rank's NaN reaches all through the average); a
        // rank's own loss alone can be infinite with finite gradients, and that rank stops the job.
        if (!std::isfinite(norm) || !std::isfinite(loss)) {
            const std::string what = fmt::format("{}; {} (lower --lr, or find the op with --detect-anomaly)",
                                                 examples::not_finite_step(static_cast<std::size_t>(state_.step) + 1, loss, norm), last_good_state());
            if (!std::isfinite(norm)) throw SameOnEveryRank(what);
            throw std::runtime_error(what);
        }
        optimizer_->step();
        ++state_.step;
        state_.carried = std::move(next);
        state_.data_position += config_.seq;
        if (!streams_->fits(state_.data_position)) {  // a new pass over the text starts from a fresh state
            state_.data_position = 0;
            state_.carried = model_->zero_state(local_batch_);
        }
        return loss;
    }

    // Bits per character over the held-out part, and a metrics row (`seconds`: when the step ended).
    void evaluate(double seconds) {
        val_bpc_ = val_ids_.empty() ? NAN : bits_per_char(*model_, val_ids_, ranks_);
        evaluated_at_ = state_.step;
        if (metrics_) {
            metrics_->append(fmt::format("{},{:.6f},{:.6f},{},{:.1f},{:.3f}\n", state_.step, train_loss_, train_loss_ / std::numbers::ln2,
                                         bpc_text(val_bpc_), chars_per_second(seconds), elapsed()));
        }
    }

    // Every rank's streams' states go into the checkpoint (a collective); rank 0 writes it.
    void save() {
        TrainingState whole = state_;
        whole.carried = {gather_rows(state_.carried.h, ranks_), gather_rows(state_.carried.c, ranks_)};
        if (ranks_.rank() == 0) save_checkpoint(out_, whole, *model_, *optimizer_);
        saved_at_ = state_.step;
    }

    // Where the run stands after a step, on rank 0's progress line (`seconds`: when the step ended).
    void report_progress(double seconds, bool last) {
        progress_line_.report({.step = state_.step,
                               .first_step = first_step_,
                               .total_steps = total_steps_,
                               .eval_every = args_.eval_every,
                               .time_limit = args_.time_limit,
                               .train_loss = train_loss_,
                               .val_bpc = val_bpc_,
                               .chars_per_second = chars_per_second(seconds)},
                              seconds, last);
    }

    // The final save, validation and summary.
    int finish(bool interrupted) {
        const bool printing = ranks_.rank() == 0;
        if (printing) progress_line_.end();
        save();  // first: a second Ctrl-C during the evaluation below may end the process at once
        const double seconds = elapsed(), rate = chars_per_second(seconds);
        if (interrupted && printing) {
            fmt::print(stderr, "interrupted: checkpoint saved at step {} ({} again to skip the final validation)\n", state_.step,
                       ranks_.distributed() ? "SIGUSR1" : "Ctrl-C");
        }
        if (evaluated_at_ != state_.step && !val_ids_.empty()) val_bpc_ = bits_per_char(*model_, val_ids_, ranks_);
        if (!printing) return exit_status(interrupted);
        fmt::print("final validation: {} bits per character\n", bpc_text(val_bpc_));
        std::fflush(stdout);  // at once: whoever reads the output learns that the validation finished
        fmt::print("steps {} (this run {}), wall time {:.1f} s, {:.0f} characters/s, {} parameters\n", state_.step,
                   state_.step - first_step_, seconds, rate, model_->parameter_count());
        if (ranks_.size() > 1 && state_.step > first_step_) {
            const double per_step = allreduce_seconds_ / static_cast<double>(state_.step - first_step_);
            fmt::print("gradient allreduce (rank 0): {:.2f} ms per step, {:.1f}% of the step\n", 1e3 * per_step,
                       100.0 * allreduce_seconds_ / seconds);
        }
        fmt::print("checkpoint: {}\n", args_.out);
        return exit_status(interrupted);
    }

    // 130 after Ctrl-C, as a shell reports an interrupted program. Under mpirun the stop was asked
    // for by SIGUSR1 and the checkpoint is whole: 0, since mpirun reports any other status as the
    // job having been aborted.
    int exit_status(bool interrupted) const { return interrupted && !ranks_.distributed() ? 130 : 0; }

    // What every rank decides after a step, together: a clock or a signal may differ between ranks.
    struct Agreement {
        double mean_loss;  // each rank's mean over an equal share: the batch's mean
        bool done;         // some rank reached the last step or the time limit
        bool interrupted;  // some rank was asked to stop (Ctrl-C, SIGUSR1)
    };
    // One collective, which also averages the loss.
    Agreement agree(double local_loss) const {
        std::array<double, 3> sums = {local_loss, state_.step >= total_steps_ || out_of_time() ? 1.0 : 0.0, interrupts > 0 ? 1.0 : 0.0};
        ranks_.sum_in_place(sums);
        return {sums[0] / ranks_.size(), sums[1] > 0, sums[2] > 0};
    }

    // Where the last good state is, for an error that stops training.
    std::string last_good_state() const {
        return saved_at_ >= 0 ? fmt::format("{} keeps step {}", args_.out, saved_at_)
                              : fmt::format("nothing was saved this run{}",
                                            resumed_ ? ", the resumed checkpoint is untouched" : " (use --save-every)");
    }

    double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    bool out_of_time() const { return args_.time_limit && elapsed() >= *args_.time_limit; }
    double chars_per_second(double seconds) const {
        return static_cast<double>(state_.step - first_step_) * static_cast<double>(config_.batch * config_.seq) / seconds;
    }

    const TrainArgs& args_;
    Ranks& ranks_;
    std::size_t local_batch_ = 0, first_stream_ = 0;  // this rank's streams: [first, first + local)
    std::optional<Checkpoint> resumed_;
    Config config_;
    Vocabulary vocabulary_;
    std::vector<std::int64_t> train_ids_, val_ids_;
    std::optional<Streams> streams_;  // over train_ids_
    std::optional<OutputLock> lock_;
    std::unique_ptr<CharLM> model_;
    std::unique_ptr<xgrad::optim::Optimizer<float>> optimizer_;
    TrainingState state_;
    std::string out_;  // the file --out names: a link's target, so that saving keeps the link
    std::int64_t total_steps_ = 0, first_step_ = 0;
    std::optional<MetricsFile> metrics_;
    xgrad::Indices inputs_, targets_;  // (seq, batch), reused by every step
    ProgressLine progress_line_;  // rank 0 prints it
    Clock::time_point start_;
    double train_loss_ = NAN, val_bpc_ = NAN;
    double allreduce_seconds_ = 0;  // this rank's, in average_gradients
    std::int64_t evaluated_at_ = -1, saved_at_ = -1;  // steps of the last evaluation and save
};
}  // namespace

int train(const TrainArgs& args, Ranks& ranks) {
    // Before anything slow, so an early signal stops the run too. Under mpirun, Ctrl-C and SIGTERM
    // end the job (mpirun kills the ranks a second later); SIGUSR1, which mpirun forwards to every
    // rank, stops and saves instead.
    if (ranks.distributed()) {
        std::signal(SIGUSR1, on_interrupt);
    } else {
        std::signal(SIGINT, on_interrupt);
        std::signal(SIGTERM, on_interrupt);
    }
    // Every rank prepares and checks everything, writing nothing; if any failed, all stop with the
    // first failure. Then rank 0 opens the outputs, and all stop if that failed.
    auto agree = [&](const std::function<void()>& work) {
        std::string error;  // empty: this rank passed
        try {
            work();
        } catch (const std::exception& e) {
            if (!ranks.distributed()) throw;
            error = *e.what() != '\0' ? e.what() : "(an error without a message)";
        }
        if (const auto [rank, message] = ranks.first_failure(error); rank >= 0) {
            throw SameOnEveryRank(rank == 0 ? message : fmt::format("rank {}: {}", rank, message));
        }
    };
    std::unique_ptr<TrainingRun> run;
    agree([&] { run = std::make_unique<TrainingRun>(args, ranks); });
    run->check_same_start();
    run->start_ranks();
    agree([&] { run->open_outputs(); });
    return run->run();
}

}  // namespace charlm
