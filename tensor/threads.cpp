#include "threads.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include "gemm/choice.hpp"

namespace xgrad {

namespace {
// One pool: OpenMP's threads run oneDNN's GEMMs, OpenBLAS's on slices (gemm/openblas.cpp) and the
// fused kernel's rows; OpenBLAS's own pool stays at one thread.
void apply_threads(int threads) {
    openblas_set_num_threads(1);
    omp_set_num_threads(threads);
}

struct Governed {
    std::mutex mutex;
    bool kept = false;  // set_blas_threads was called
    std::optional<ThreadGovernor> governor;
    std::optional<std::chrono::steady_clock::time_point> last_step;
};

Governed& governed() {
    static Governed state;
    return state;
}
}  // namespace

void set_blas_threads(int threads) {
    if (threads < 1) throw std::invalid_argument(fmt::format("set_blas_threads: {} threads", threads));
    Governed& state = governed();
    const std::lock_guard lock(state.mutex);
    state.kept = true;
    apply_threads(threads);
}

int blas_threads() { return omp_get_max_threads(); }

ThreadGovernor::ThreadGovernor(int most) : most_(std::max(1, most)), current_(most_), held_(most_) {}

void ThreadGovernor::start(Phase phase, int threads) {
    phase_ = phase;
    current_ = threads;
    steps_in_phase_ = 0;
    window_fill_ = 0;
}

void ThreadGovernor::try_other() {
    const int other = held_ == most_ ? 1 : most_;
    bool& seen = other == 1 ? seen_one_ : seen_most_;
    start(seen ? Phase::measure : Phase::settle, other);  // only a count's first steps time GEMM choices
    seen = true;
}

double ThreadGovernor::median_of_window() const {
    double sorted[measured_steps];
    std::copy(window_, window_ + measured_steps, sorted);
    std::sort(sorted, sorted + measured_steps);
    return sorted[measured_steps / 2];
}

int ThreadGovernor::next(double seconds) {
    if (most_ == 1) return 1;
    ++steps_in_phase_;
    switch (phase_) {
        case Phase::settle:
            if (steps_in_phase_ >= settle_steps) start(Phase::measure, current_);
            break;
        case Phase::measure:
            window_[window_fill_++] = seconds;
            if (current_ == held_) {  // the held count measured: now the other
                if (window_fill_ == measured_steps) {
                    held_median_ = median_of_window();
                    try_other();
                }
            } else if (seconds > 2 * held_median_) {  // clearly slower: back at once, tried less often
                hold_ = std::min(2 * hold_, longest_hold);
                start(Phase::hold, held_);
            } else if (window_fill_ == measured_steps) {
                if (median_of_window() < 0.95 * held_median_) {  // the other is faster: it holds now
                    held_median_ = median_of_window();
                    held_ = current_;
                    hold_ = first_hold;
                    ++changes_;
                } else {  // the held count stays, and is tried less often
                    hold_ = std::min(2 * hold_, longest_hold);
                }
                start(Phase::hold, held_);
            }
            break;
        case Phase::hold:
            window_[steps_in_phase_ % measured_steps] = seconds;
            window_fill_ = std::min(window_fill_ + 1, measured_steps);
            if (window_fill_ == measured_steps && median_of_window() > 1.5 * held_median_) {
                hold_ = first_hold;  // the steps slowed down (another process started?): try the other now
                held_median_ = median_of_window();
                try_other();
            } else if (steps_in_phase_ >= hold_) {
                if (window_fill_ == measured_steps) held_median_ = median_of_window();
                try_other();
            }
            break;
    }
    return current_;
}

void govern_threads() {
    Governed& state = governed();
    const std::lock_guard lock(state.mutex);
    const auto now = std::chrono::steady_clock::now();
    const auto last = std::exchange(state.last_step, now);
    if (state.kept) return;
    if (!state.governor) state.governor.emplace(blas_threads());
    if (blas::provider_pinned()) {  // a pinned run gives the same bits every time: all threads, always
        const int most = state.governor->most();
        if (blas_threads() != most) apply_threads(most);
        state.governor.emplace(most);
        return;
    }
    if (!last) return;
    const int before = state.governor->threads();
    const int after = state.governor->next(std::chrono::duration<double>(now - *last).count());
    if (after != before) apply_threads(after);
}

bool threads_governed() {
    Governed& state = governed();
    const std::lock_guard lock(state.mutex);
    return !state.kept && !blas::provider_pinned() && (state.governor ? state.governor->most() : blas_threads()) > 1;
}

std::string thread_governor_state() {
    Governed& state = governed();
    const std::lock_guard lock(state.mutex);
    if (state.kept) return fmt::format("kept at {} threads (set_blas_threads)", blas_threads());
    if (blas::provider_pinned()) return fmt::format("kept at {} threads (the GEMM provider is pinned)", blas_threads());
    if (!state.governor) return fmt::format("governed: {} threads, no step taken yet", blas_threads());
    return fmt::format("governed: {} of {} threads ({} change{})", state.governor->threads(), state.governor->most(),
                       state.governor->changes(), state.governor->changes() == 1 ? "" : "s");
}

}  // namespace xgrad
