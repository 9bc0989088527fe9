/// @file
/// xgrad's worker threads, and the governor that keeps them from hurting: between all of them and
/// one, it runs whichever the training steps measure faster.
#pragma once

#include <cstddef>
#include <string>

namespace xgrad {

/// xgrad's worker threads: one pool, OpenMP's, which runs oneDNN's GEMMs, OpenBLAS's (each thread
/// on a slice of the product, OpenBLAS's own pool kept at one thread: two pools of spinning workers
/// fight over the cores) and the fused kernel's rows. At start-up as many as OMP_NUM_THREADS says,
/// else one per core. OpenMP's count belongs to the calling thread: call it on each thread that
/// trains. A count set here is kept: the thread governor stops (see govern_threads).
/// Fewer than 1 thread throws std::invalid_argument.
void set_blas_threads(int threads);
/// xgrad's thread count on the calling thread (what set_blas_threads or the governor set, or the
/// start-up default).
int blas_threads();

/// Measures, at each training step, whether the threads help, and runs one thread when they do not:
/// beside another busy process, workers that wait for a core at every parallel region can make a
/// step many times slower than one thread alone. It tries the other count for a few steps now and
/// then (more rarely while its choice holds, at once when the steps slow down by half; a try ends
/// at its first step twice as slow), and keeps whichever ran faster by 5%. Pure bookkeeping over
/// the durations it is given: see govern_threads for the process's own.
class ThreadGovernor {
public:
    /// Chooses between `most` threads and one; with most == 1 it always answers 1.
    explicit ThreadGovernor(int most);
    /// Records how long the step just finished took at threads(); returns the count for the next step.
    int next(double seconds);
    /// The count the current step runs.
    int threads() const { return current_; }
    /// The larger of the two counts it chooses between.
    int most() const { return most_; }
    /// How many times it has changed its choice.
    std::size_t changes() const { return changes_; }

    /// Steps it runs at a count the first time before it measures them (the first step at a count
    /// times the GEMM choices for it), how many it measures, and how long a choice holds at first
    /// and at most before the other count is tried again.
    ///@{
    static constexpr int settle_steps = 1, measured_steps = 3, first_hold = 32, longest_hold = 1024;
    ///@}

private:
    enum class Phase { settle, measure, hold };
    void start(Phase phase, int threads);
    void try_other();
    double median_of_window() const;

    int most_;
    int current_;
    int held_;               // the count the current choice holds (current_ differs while trying the other)
    Phase phase_ = Phase::settle;
    int steps_in_phase_ = 0;
    int hold_ = first_hold;  // steps the choice holds before the other count is tried again
    double window_[measured_steps] = {};
    int window_fill_ = 0;
    double held_median_ = 0;  // the held count's median step when it was last measured
    bool seen_most_ = true, seen_one_ = false;  // whether a count ran before (its GEMM choices are made)
    std::size_t changes_ = 0;
};

/// Called once per training step (xgrad::optim's Optimizer::step does): times the steps and lets a
/// process-wide ThreadGovernor set the thread count, unless the count was set (set_blas_threads),
/// the GEMM provider is pinned (its runs must give the same bits), or there is one thread to start with.
void govern_threads();
/// Whether govern_threads still chooses the thread count.
bool threads_governed();
/// The governor's state, for people: "governed: 1 of 2 threads (2 changes)" or "kept at 2 threads
/// (set_blas_threads)".
std::string thread_governor_state();

}  // namespace xgrad
