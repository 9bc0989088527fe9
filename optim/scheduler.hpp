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
#include <functional>
#include <map>
#include <optional>
#include <string>
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
    /// Every group's momentum at step `epoch`, for a schedule that sets it (OneCycleLR); none by default.
    virtual std::optional<double> momentum_at(std::int64_t /*epoch*/) const { return std::nullopt; }

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

/// lr = base · λ(epoch), as torch.optim.lr_scheduler.LambdaLR with one function for every group.
template <class T>
class LambdaLR : public LRScheduler<T> {
  public:
    /// Sets step 0's lr (base · λ(0)). An empty function throws std::invalid_argument; a λ whose lr is
    /// negative or not finite makes the step that meets it throw (Optimizer::set_lr), changing nothing.
    LambdaLR(Optimizer<T>& optimizer, std::function<double(std::int64_t)> lr_lambda);
    /// base · λ(epoch)
    double lr_at(std::int64_t epoch, double base_lr) const override;

  private:
    std::function<double(std::int64_t)> lambda_;
};

/// OneCycleLR's options, torch.optim.lr_scheduler.OneCycleLR's defaults: `OneCycleLROptions(0.1, 1000).pct_start(0.25)`.
class OneCycleLROptions {
  public:
    /// The peak lr of every group, and the steps of the whole cycle.
    OneCycleLROptions(double max_lr, std::int64_t total_steps) : max_lr_(max_lr), total_steps_(total_steps) {}
    /// The peak lr; max_lrs, when set, gives one per group instead.
    XGRAD_OPTION(double, max_lr);
    /// One peak lr per parameter group (as torch's list); empty: max_lr for every group.
    XGRAD_OPTION(std::vector<double>, max_lrs);
    /// The steps of the cycle; stepping past it throws.
    XGRAD_OPTION(std::int64_t, total_steps);
    /// The share of the cycle spent rising to max_lr.
    XGRAD_OPTION(double, pct_start) = 0.3;
  public:
    /// How each phase moves between its ends: cosine (torch's "cos") or linear.
    enum class Anneal { cos, linear };
    /// cos unless set, as torch's.
    XGRAD_OPTION(Anneal, anneal_strategy) = Anneal::cos;
    /// Whether the momentum (SGD's and RMSprop's μ, Adam's β1) runs against the lr, between
    /// max_momentum and base_momentum; needs an optimizer with momentum.
    XGRAD_OPTION(bool, cycle_momentum) = true;
    /// The momentum at the lr's peak.
    XGRAD_OPTION(double, base_momentum) = 0.85;
    /// The momentum at the cycle's ends.
    XGRAD_OPTION(double, max_momentum) = 0.95;
    /// The first lr is max_lr / div_factor.
    XGRAD_OPTION(double, div_factor) = 25.0;
    /// The last lr is the first / final_div_factor.
    XGRAD_OPTION(double, final_div_factor) = 1e4;
    /// Three phases (up, back down to the first lr, then to the last) instead of two (up, then down to the last).
    XGRAD_OPTION(bool, three_phase) = false;
};

/// The 1cycle policy (Smith and Topin 2018), as torch.optim.lr_scheduler.OneCycleLR: the lr rises
/// from max_lr / div_factor to max_lr over pct_start of total_steps, then falls to the first lr /
/// final_div_factor, each phase annealed by cosine or linearly, the momentum moving the other way.
/// It sets the optimizer's lr (and momentum) at construction: each group's base lr is its max_lr.
/// One difference from torch: at step total_steps (after the last update of the usual loop) the lr
/// and momentum are the cycle's last, where torch extrapolates the last phase past its end.
template <class T>
class OneCycleLR : public LRScheduler<T> {
  public:
    /// Sets step 0's lr and momentum. std::invalid_argument for total_steps <= 0, pct_start outside
    /// [0, 1], a max_lr or div factor that is not positive and finite, a momentum that is not finite
    /// and >= 0 (and below 1 for Adam's β1), a max_lrs list whose length is not the group count, or cycle_momentum on an
    /// optimizer without momentum (Adagrad).
    OneCycleLR(Optimizer<T>& optimizer, OneCycleLROptions options);
    /// The lr at `epoch` in a group whose max_lr is `max_lr`; epoch > total_steps throws std::invalid_argument.
    double lr_at(std::int64_t epoch, double max_lr) const override;
    /// The momentum at `epoch` when cycle_momentum, else none.
    std::optional<double> momentum_at(std::int64_t epoch) const override;

  private:
    struct Phase {
        double end_step, start_lr, end_lr, start_momentum, end_momentum;  // lrs as multiples of max_lr
    };
    // The phase holding `epoch` and the progress through it, in [0, 1].
    std::pair<const Phase*, double> phase_at(std::int64_t epoch) const;
    double anneal(double start, double end, double pct) const;
    OneCycleLROptions options_;
    std::vector<Phase> phases_;
};

/// ReduceLROnPlateau's options, torch's defaults: `ReduceLROnPlateauOptions().patience(3).factor(0.5)`.
class ReduceLROnPlateauOptions {
  public:
    /// Whether the metric should fall (a loss) or rise (an accuracy).
    enum class Mode { min, max };
    /// min unless set, as torch's.
    XGRAD_OPTION(Mode, mode) = Mode::min;
    /// The lr is multiplied by this when it falls; in (0, 1).
    XGRAD_OPTION(double, factor) = 0.1;
    /// Steps without improvement tolerated; the next one lowers the lr.
    XGRAD_OPTION(std::int64_t, patience) = 10;
    /// How much better a metric must be to count: relatively (best · (1 ∓ threshold)) or absolutely (best ∓ threshold).
    XGRAD_OPTION(double, threshold) = 1e-4;
  public:
    /// Whether the threshold is relative to the best metric or absolute.
    enum class ThresholdMode { rel, abs };
    /// rel unless set, as torch's.
    XGRAD_OPTION(ThresholdMode, threshold_mode) = ThresholdMode::rel;
    /// Steps after a fall during which no step counts as bad.
    XGRAD_OPTION(std::int64_t, cooldown) = 0;
    /// The lowest lr of every group; min_lrs, when set, one per group.
    XGRAD_OPTION(double, min_lr) = 0.0;
    /// One lowest lr per parameter group (as torch's list); empty: min_lr for every group.
    XGRAD_OPTION(std::vector<double>, min_lrs);
    /// A fall smaller than this is not made.
    XGRAD_OPTION(double, eps) = 1e-8;
};

/// Lowers every group's lr by `factor` when a metric has stopped improving for `patience` steps, as
/// torch.optim.lr_scheduler.ReduceLROnPlateau. It is driven by the metric, not the step count: call
/// step(metric) after each evaluation. A NaN metric counts as no improvement.
template <class T>
class ReduceLROnPlateau {
  public:
    /// Bad options (factor outside (0, 1), negative patience, cooldown, threshold or eps, a min_lrs
    /// list whose length is not the group count) throw std::invalid_argument.
    explicit ReduceLROnPlateau(Optimizer<T>& optimizer, ReduceLROnPlateauOptions options = {});
    /// Takes one evaluation's metric: improves the best, or counts a bad step and lowers the lr after
    /// more than `patience` of them (then waits `cooldown` steps).
    void step(double metric);
    /// The best metric so far (+inf or -inf before any, as the mode says).
    double best() const { return best_; }
    /// Bad steps since the last improvement or fall.
    std::int64_t num_bad_epochs() const { return num_bad_epochs_; }
    /// Steps of cooldown left.
    std::int64_t cooldown_counter() const { return cooldown_counter_; }
    /// Steps taken.
    std::int64_t last_epoch() const { return last_epoch_; }
    /// The counters to save beside the optimizer's state (which holds the lrs), as metadata entries
    /// "plateau.best", "plateau.num_bad_epochs", "plateau.cooldown_counter", "plateau.last_epoch" and
    /// "plateau.mode": they can be merged into the optimizer's state_dict().metadata.
    std::map<std::string, std::string> state_dict() const;
    /// Restores what state_dict wrote (other entries are ignored). A missing or malformed entry, or
    /// another mode, throws std::invalid_argument naming it, changing nothing.
    void load_state_dict(const std::map<std::string, std::string>& state);

  private:
    bool better(double metric) const;
    Optimizer<T>& optimizer_;
    ReduceLROnPlateauOptions options_;
    std::vector<double> min_lrs_;
    double best_;
    std::int64_t num_bad_epochs_ = 0, cooldown_counter_ = 0, last_epoch_ = 0;
};

}  // namespace xgrad::optim
