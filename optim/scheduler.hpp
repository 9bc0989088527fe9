/// @file
/// Learning-rate schedules. Each sets the optimizer's lr from the number of scheduler steps taken
/// (call step() once per training step, after optimizer.step()). With parameter groups each group
/// follows the schedule from its own lr when the scheduler is built (its base_lrs, as torch's
/// initial_lr). The schedules are closed forms of the step: a set_lr between steps lasts until the
/// next step (torch's StepLR would go on from it), and a scheduler built after load_state_dict or
/// after another scheduler starts from the rate it finds — build schedulers first, then resume
/// them with set_last_epoch.
///
/// @code
///   xgrad::optim::CosineWarmupLR<float> schedule(opt, /*warmup*/ 100, /*total*/ 3000);
///   for (...) { ...; opt.step(); schedule.step(); }
/// @endcode
#pragma once

#include <cstdint>
#include <vector>

#include "optimizer.hpp"

namespace xgrad::optim {

/// The base of the schedules: the step count and each group's base lr; a schedule supplies
/// lr_at. It holds a reference to the optimizer, which must outlive it.
template <class T>
class LRScheduler {
  public:
    virtual ~LRScheduler() = default;
    /// Advances one step and sets every group's lr for it: call once per optimizer.step().
    /// std::overflow_error once the count is at Optimizer::max_steps.
    void step();
    /// Steps taken: 0 right after construction (which already set the lr for step 0).
    std::int64_t last_epoch() const { return last_epoch_; }
    /// Jumps to step `epoch` (to resume from a checkpoint) and sets the lr for it.
    /// A negative epoch, or one above Optimizer::max_steps, throws std::invalid_argument.
    void set_last_epoch(std::int64_t epoch);
    /// Each group's lr when the scheduler was built.
    const std::vector<double>& base_lrs() const { return base_lrs_; }
    /// The lr at step `epoch` of a group that started from `base_lr`.
    virtual double lr_at(std::int64_t epoch, double base_lr) const = 0;

  protected:
    /// Records each group's current lr as its base; the derived constructor then sets step 0's lr.
    explicit LRScheduler(Optimizer<T>& optimizer);
    /// The optimizer whose learning rates the schedule sets.
    Optimizer<T>& optimizer_;
    /// Each group's lr at construction.
    std::vector<double> base_lrs_;
    /// The current step.
    std::int64_t last_epoch_ = 0;
};

/// Decay by γ every step_size steps, as torch.optim.lr_scheduler.StepLR:
/// lr = base · γ^⌊epoch / step_size⌋
template <class T>
class StepLR : public LRScheduler<T> {
  public:
    /// Sets step 0's lr (the base). step_size and gamma must be positive (std::invalid_argument).
    StepLR(Optimizer<T>& optimizer, std::int64_t step_size, double gamma = 0.1);
    /// base · γ^⌊epoch / step_size⌋
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    std::int64_t step_size_;
    double gamma_;
};

/// Decay by γ every step, as torch.optim.lr_scheduler.ExponentialLR:
/// lr = base · γ^epoch
template <class T>
class ExponentialLR : public LRScheduler<T> {
  public:
    /// Sets step 0's lr (the base). gamma must be positive (std::invalid_argument).
    ExponentialLR(Optimizer<T>& optimizer, double gamma);
    /// base · γ^epoch
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    double gamma_;
};

/// Linear warmup, lr = base · (epoch + 1) / warmup for epoch < warmup; then cosine decay from base
/// to min_lr over the remaining total - warmup steps, and min_lr after. min_lr is one value for every
/// group (torch's eta_min) and, unlike eta_min, must not exceed any group's base: a schedule that
/// would raise a group's rate as it "decays" is refused rather than followed.
template <class T>
class CosineWarmupLR : public LRScheduler<T> {
  public:
    /// Sets step 0's lr (base / warmup_steps, or the base without warmup). Needs
    /// 0 <= warmup_steps < total_steps and 0 <= min_lr <= every base lr (std::invalid_argument).
    CosineWarmupLR(Optimizer<T>& optimizer, std::int64_t warmup_steps, std::int64_t total_steps, double min_lr = 0.0);
    /// The warmup, then min_lr + (base - min_lr) (1 + cos(π progress)) / 2, progress capped at 1.
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    std::int64_t warmup_, total_;
    double min_lr_;
};

}  // namespace xgrad::optim
