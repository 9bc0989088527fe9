// Learning-rate schedules. Each sets the optimizer's lr from the number of scheduler steps taken
// (call step() once per training step, after optimizer.step()). With parameter groups each group
// follows the schedule from its own lr when the scheduler is built (its base_lrs, as torch's
// initial_lr). The schedules are closed forms of the step: a set_lr between steps lasts until the
// next step (torch's StepLR would go on from it), and a scheduler built after load_state_dict or
// after another scheduler starts from the rate it finds — build schedulers first, then resume
// them with set_last_epoch.
//
//   xgrad::optim::CosineWarmupLR<float> schedule(opt, /*warmup*/ 100, /*total*/ 3000);
//   for (...) { ...; opt.step(); schedule.step(); }
#pragma once

#include <cstdint>
#include <vector>

#include "optimizer.hpp"

namespace xgrad::optim {

template <class T>
class LRScheduler {
  public:
    virtual ~LRScheduler() = default;
    void step() { set_last_epoch(last_epoch_ + 1); }
    std::int64_t last_epoch() const { return last_epoch_; }
    // Jumps to step `epoch` (to resume from a checkpoint) and sets the lr for it.
    void set_last_epoch(std::int64_t epoch);
    // Each group's lr when the scheduler was built.
    const std::vector<double>& base_lrs() const { return base_lrs_; }
    // The lr at step `epoch` of a group that started from `base_lr`.
    virtual double lr_at(std::int64_t epoch, double base_lr) const = 0;

  protected:
    explicit LRScheduler(Optimizer<T>& optimizer);
    Optimizer<T>& optimizer_;
    std::vector<double> base_lrs_;
    std::int64_t last_epoch_ = 0;
};

// lr = base · γ^⌊epoch / step_size⌋
template <class T>
class StepLR : public LRScheduler<T> {
  public:
    StepLR(Optimizer<T>& optimizer, std::int64_t step_size, double gamma = 0.1);
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    std::int64_t step_size_;
    double gamma_;
};

// lr = base · γ^epoch
template <class T>
class ExponentialLR : public LRScheduler<T> {
  public:
    ExponentialLR(Optimizer<T>& optimizer, double gamma);
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    double gamma_;
};

// Linear warmup, lr = base · (epoch + 1) / warmup for epoch < warmup; then cosine decay from base
// to min_lr over the remaining total - warmup steps, and min_lr after. min_lr is one value for every
// group (torch's eta_min) and, unlike eta_min, must not exceed any group's base: a schedule that
// would raise a group's rate as it "decays" is refused rather than followed.
template <class T>
class CosineWarmupLR : public LRScheduler<T> {
  public:
    CosineWarmupLR(Optimizer<T>& optimizer, std::int64_t warmup_steps, std::int64_t total_steps, double min_lr = 0.0);
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    std::int64_t warmup_, total_;
    double min_lr_;
};

}  // namespace xgrad::optim
