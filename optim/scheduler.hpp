// Learning-rate schedules. Each sets the optimizer's lr from the number of scheduler steps taken
// (call step() once per training step, after optimizer.step()).
//
//   xgrad::optim::CosineWarmupLR<float> schedule(opt, /*warmup*/ 100, /*total*/ 3000);
//   for (...) { ...; opt.step(); schedule.step(); }
#pragma once

#include <cstdint>

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
    double base_lr() const { return base_lr_; }
    virtual double lr_at(std::int64_t epoch) const = 0;

  protected:
    explicit LRScheduler(Optimizer<T>& optimizer) : optimizer_(optimizer), base_lr_(optimizer.lr()) {}
    Optimizer<T>& optimizer_;
    double base_lr_;
    std::int64_t last_epoch_ = 0;
};

// lr = base · γ^⌊epoch / step_size⌋
template <class T>
class StepLR : public LRScheduler<T> {
  public:
    StepLR(Optimizer<T>& optimizer, std::int64_t step_size, double gamma = 0.1);
    double lr_at(std::int64_t epoch) const override;

  private:
    std::int64_t step_size_;
    double gamma_;
};

// lr = base · γ^epoch
template <class T>
class ExponentialLR : public LRScheduler<T> {
  public:
    ExponentialLR(Optimizer<T>& optimizer, double gamma);
    double lr_at(std::int64_t epoch) const override;

  private:
    double gamma_;
};

// Linear warmup, lr = base · (epoch + 1) / warmup for epoch < warmup; then cosine decay from base
// to min_lr over the remaining total - warmup steps, and min_lr after.
template <class T>
class CosineWarmupLR : public LRScheduler<T> {
  public:
    CosineWarmupLR(Optimizer<T>& optimizer, std::int64_t warmup_steps, std::int64_t total_steps, double min_lr = 0.0);
    double lr_at(std::int64_t epoch) const override;

  private:
    std::int64_t warmup_, total_;
    double min_lr_;
};

}  // namespace xgrad::optim
