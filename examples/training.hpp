// What the worked examples share: their common flags (steps, batch, sizes, learning rate, seed,
// test size and the short mode's --require-loss-below), registered once with their checks, and
// the training loop, which stops at a loss or gradient norm that is not finite (guards.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "cli_checks.hpp"
#include "guards.hpp"

namespace examples {

struct TrainingFlags {
    std::size_t steps, batch, hidden, test_size;
    double lr;
    std::uint64_t seed = 1;
    double require_loss_below = 0;
    int threads = 0;  // BLAS threads; 0: as the environment sets
};

inline void add_training_flags(CLI::App& app, TrainingFlags& f) {
    const auto positive = CLI::Range(std::size_t{1}, std::size_t{1000000});
    app.add_option("--steps", f.steps, "training steps")->check(positive)->capture_default_str();
    app.add_option("--batch", f.batch, "sequences per step")->check(CLI::Range(std::size_t{1}, std::size_t{4096}))->capture_default_str();
    app.add_option("--hidden", f.hidden, "hidden size")->check(CLI::Range(std::size_t{1}, std::size_t{4096}))->capture_default_str();
    app.add_option("--test-size", f.test_size, "test sequences (of each length range, where there are several)")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--lr", f.lr, "learning rate")->check(finite_number() & CLI::PositiveNumber)->capture_default_str();
    app.add_option("--seed", f.seed, "seed of the data and the initial weights")->check(seed_number())->capture_default_str();
    app.add_option("--threads", f.threads, "BLAS threads (default: as the environment sets)")->check(CLI::Range(1, 256));
    app.add_option("--require-loss-below", f.require_loss_below,
                   "exit 1 unless the mean training loss of the last 50 steps is below this (0: no check)")
        ->check(finite_number() & CLI::NonNegativeNumber);
}

struct LengthFlags {
    std::size_t min_length, max_length;
};

inline void add_length_flags(CLI::App& app, LengthFlags& f, std::size_t shortest) {
    const auto lengths = CLI::Range(shortest, std::size_t{1000});  // tests run up to 4x the longest: keep them in memory
    app.add_option("--min-length", f.min_length, "shortest training sequence")->check(lengths)->capture_default_str();
    app.add_option("--max-length", f.max_length, "longest training sequence")->check(lengths)->capture_default_str();
}

// Applies the flags that act on the process rather than the model: --threads.
inline void apply_process_flags(const TrainingFlags& f) {
    if (f.threads > 0) xgrad::set_blas_threads(f.threads);
}

// Parses the command line (see parse_command_line) and checks that the lengths are in order.
inline std::optional<int> parse_with_lengths(CLI::App& app, int argc, char** argv, std::string_view program, const LengthFlags& f) {
    if (auto status = parse_command_line(app, argc, argv, program)) return status;
    if (f.min_length > f.max_length) {
        fmt::print(stderr, "{}: --min-length ({}) is above --max-length ({})\n", program, f.min_length, f.max_length);
        return 1;
    }
    return std::nullopt;
}

// The mean of the last (up to) 50 training losses.
inline double recent_loss(const std::vector<double>& losses) {
    const std::size_t n = std::min<std::size_t>(50, losses.size());
    double sum = 0;
    for (std::size_t i = losses.size() - n; i < losses.size(); ++i) sum += losses[i];
    return n == 0 ? std::nan("") : sum / static_cast<double>(n);
}

// The exit status of a run asked to reach a loss (--require-loss-below; 0 asks nothing): 1, with
// one line saying so, unless recent_loss is below it.
inline int require_loss_below(std::string_view program, const std::vector<double>& losses, double limit) {
    if (limit <= 0 || recent_loss(losses) < limit) return 0;
    fmt::print(stderr, "{}: the mean training loss of the last steps, {:.4f}, is not below {}\n", program, recent_loss(losses), limit);
    return 1;
}

// Trains for `steps` steps: batch_loss(graph, report) gives the step's loss and, when `report`,
// the batch's accuracy; then backward, gradients clipped to norm 1, opt.step() and after_step()
// (a schedule's step). Prints the recent loss and that accuracy ten times. Returns every step's loss.
// A step whose loss or gradient norm is not finite throws (stop_unless_finite) before its update.
template <class BatchLoss, class AfterStep = void (*)()>
std::vector<double> train(std::size_t steps, xgrad::optim::Optimizer<float>& opt, std::string_view accuracy_name,
                          BatchLoss batch_loss, AfterStep after_step = [] {}) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<double> losses;
    for (std::size_t step = 1; step <= steps; ++step) {
        const bool report = step % std::max<std::size_t>(1, steps / 10) == 0 || step == steps;
        xgrad::Graph<float> g;
        const auto [loss, accuracy] = batch_loss(g, report);
        opt.zero_grad();
        loss.backward();
        stop_unless_finite(step, loss.item(), xgrad::nn::clip_grad_norm(opt.parameters(), 1.0));
        opt.step();
        after_step();
        losses.push_back(loss.item());
        if (report) {
            fmt::print("step {:5d}  loss {:.4f}  {} {:5.1f}%  {:.0f} s\n", step, recent_loss(losses), accuracy_name, 100 * accuracy,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
    }
    return losses;
}

}  // namespace examples
