#include "scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>

#include <fmt/format.h>

#include "parse.hpp"

namespace xgrad::optim {

template <class T>
LRScheduler<T>::LRScheduler(Optimizer<T>& optimizer) : optimizer_(optimizer) {
    for (std::size_t g = 0; g < optimizer.num_param_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

// The count is bounded as the optimizer's own step count is, so that step() cannot overflow it.
template <class T>
void LRScheduler<T>::step() {
    if (last_epoch_ >= Optimizer<T>::max_steps) {
        throw std::overflow_error(fmt::format("LRScheduler.step: step count {} is at its limit", last_epoch_));
    }
    set_last_epoch(last_epoch_ + 1);
}

template <class T>
void LRScheduler<T>::set_last_epoch(std::int64_t epoch) {
    if (epoch < 0) throw std::invalid_argument(fmt::format("LRScheduler: epoch {} is negative", epoch));
    if (epoch > Optimizer<T>::max_steps) {
        throw std::invalid_argument(fmt::format("LRScheduler: epoch {} is above the limit of {} steps", epoch, Optimizer<T>::max_steps));
    }
    // Everything computed and checked before anything changes: a schedule that throws leaves the step as it was.
    std::vector<double> lrs;
    for (std::size_t g = 0; g < base_lrs_.size(); ++g) {
        lrs.push_back(lr_at(epoch, base_lrs_[g]));
        if (!(lrs.back() >= 0) || !std::isfinite(lrs.back())) {
            throw std::invalid_argument(fmt::format("LRScheduler: the lr at step {} of group {} is {}", epoch, g, lrs.back()));
        }
    }
    const std::optional<double> momentum = momentum_at(epoch);
    last_epoch_ = epoch;
    for (std::size_t g = 0; g < base_lrs_.size(); ++g) {
        optimizer_.set_lr(g, lrs[g]);
        if (momentum) optimizer_.set_momentum(g, *momentum);
    }
}

template <class T>
StepLR<T>::StepLR(Optimizer<T>& optimizer, std::int64_t step_size, double gamma)
    : LRScheduler<T>(optimizer), step_size_(step_size), gamma_(gamma) {
    if (step_size <= 0) throw std::invalid_argument(fmt::format("StepLR: step_size = {} must be positive", step_size));
    if (!(gamma > 0)) throw std::invalid_argument(fmt::format("StepLR: gamma = {} must be positive", gamma));
    this->set_last_epoch(0);
}

template <class T>
double StepLR<T>::lr_at(std::int64_t epoch, double base_lr) const {
    return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

template <class T>
ExponentialLR<T>::ExponentialLR(Optimizer<T>& optimizer, double gamma) : LRScheduler<T>(optimizer), gamma_(gamma) {
    if (!(gamma > 0)) throw std::invalid_argument(fmt::format("ExponentialLR: gamma = {} must be positive", gamma));
    this->set_last_epoch(0);
}

template <class T>
double ExponentialLR<T>::lr_at(std::int64_t epoch, double base_lr) const {
    return base_lr * std::pow(gamma_, static_cast<double>(epoch));
}

template <class T>
CosineWarmupLR<T>::CosineWarmupLR(Optimizer<T>& optimizer, std::int64_t warmup_steps, std::int64_t total_steps,
                                  double min_lr)
    : LRScheduler<T>(optimizer), warmup_(warmup_steps), total_(total_steps), min_lr_(min_lr) {
    if (warmup_steps < 0 || total_steps <= warmup_steps) {
        throw std::invalid_argument(fmt::format("CosineWarmupLR: need 0 <= warmup_steps ({}) < total_steps ({})",
                                                warmup_steps, total_steps));
    }
    for (std::size_t g = 0; g < this->base_lrs_.size(); ++g) {
        if (!(min_lr >= 0 && min_lr <= this->base_lrs_[g])) {
            throw std::invalid_argument(fmt::format("CosineWarmupLR: min_lr = {} must be in [0, base lr {}] (group {})", min_lr,
                                                    this->base_lrs_[g], g));
        }
    }
    this->set_last_epoch(0);
}

template <class T>
double CosineWarmupLR<T>::lr_at(std::int64_t epoch, double base_lr) const {
    if (epoch < warmup_) return base_lr * static_cast<double>(epoch + 1) / static_cast<double>(warmup_);
    const double progress = std::min(1.0, static_cast<double>(epoch - warmup_) / static_cast<double>(total_ - warmup_));
    return min_lr_ + (base_lr - min_lr_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

template <class T>
LambdaLR<T>::LambdaLR(Optimizer<T>& optimizer, std::function<double(std::int64_t)> lr_lambda)
    : LRScheduler<T>(optimizer), lambda_(std::move(lr_lambda)) {
    if (!lambda_) throw std::invalid_argument("LambdaLR: lr_lambda is empty");
    this->set_last_epoch(0);
}

template <class T>
double LambdaLR<T>::lr_at(std::int64_t epoch, double base_lr) const {
    return base_lr * lambda_(epoch);
}

namespace {
void check_positive(const char* who, const char* what, double value) {
    if (!(value > 0) || !std::isfinite(value)) throw std::invalid_argument(fmt::format("{}: {} = {} must be positive and finite", who, what, value));
}
}  // namespace

template <class T>
OneCycleLR<T>::OneCycleLR(Optimizer<T>& optimizer, OneCycleLROptions options) : LRScheduler<T>(optimizer), options_(std::move(options)) {
    const auto& o = options_;
    if (o.total_steps() <= 0) throw std::invalid_argument(fmt::format("OneCycleLR: total_steps = {} must be positive", o.total_steps()));
    if (!(o.pct_start() >= 0 && o.pct_start() <= 1)) {
        throw std::invalid_argument(fmt::format("OneCycleLR: pct_start = {} must be in [0, 1]", o.pct_start()));
    }
    check_positive("OneCycleLR", "div_factor", o.div_factor());
    check_positive("OneCycleLR", "final_div_factor", o.final_div_factor());
    const std::size_t groups = optimizer.num_param_groups();
    if (!o.max_lrs().empty() && o.max_lrs().size() != groups) {
        throw std::invalid_argument(fmt::format("OneCycleLR: {} max_lrs for {} parameter groups", o.max_lrs().size(), groups));
    }
    for (std::size_t g = 0; g < groups; ++g) {
        this->base_lrs_[g] = o.max_lrs().empty() ? o.max_lr() : o.max_lrs()[g];
        check_positive("OneCycleLR", "max_lr", this->base_lrs_[g]);
    }
    if (o.cycle_momentum()) {
        if (optimizer.momentum_kind() == MomentumKind::none) {
            throw std::invalid_argument(fmt::format("OneCycleLR: cycle_momentum needs an optimizer with momentum, and {} has none",
                                                    optimizer.name()));
        }
        for (const auto& [what, m] : {std::pair{"base_momentum", o.base_momentum()}, std::pair{"max_momentum", o.max_momentum()}}) {
            if (!(m >= 0) || !std::isfinite(m) || (optimizer.momentum_kind() == MomentumKind::beta1 && !(m < 1))) {
                throw std::invalid_argument(fmt::format("OneCycleLR: {} = {} is not a momentum {} takes", what, m, optimizer.name()));
            }
        }
    }
    // In multiples of max_lr: the first lr 1/div, the last 1/(div · final_div); steps as torch's floats.
    const double first = 1.0 / o.div_factor(), last = first / o.final_div_factor();
    const double up = o.pct_start() * static_cast<double>(o.total_steps()), end = static_cast<double>(o.total_steps()) - 1;
    const double low = o.base_momentum(), high = o.max_momentum();
    if (o.three_phase()) phases_ = {{up - 1, first, 1, high, low}, {2 * up - 2, 1, first, low, high}, {end, first, last, high, high}};
    else phases_ = {{up - 1, first, 1, high, low}, {end, 1, last, low, high}};
    this->set_last_epoch(0);
}

template <class T>
std::pair<const typename OneCycleLR<T>::Phase*, double> OneCycleLR<T>::phase_at(std::int64_t epoch) const {
    if (epoch > options_.total_steps()) {
        throw std::invalid_argument(fmt::format("OneCycleLR: step {} is past total_steps = {}", epoch, options_.total_steps()));
    }
    const auto step = static_cast<double>(epoch);
    double start = 0;
    for (std::size_t i = 0; i < phases_.size(); ++i) {
        const Phase& p = phases_[i];
        if (step <= p.end_step || i + 1 == phases_.size()) {
            // A phase of no length (pct_start · total_steps = 1) is over at once; torch divides by zero there.
            // At step total_steps, which the usual loop reaches after its last update, the last phase is
            // at its end: torch extrapolates past it there (to a negative lr in a linear three-phase cycle).
            const double pct = p.end_step == start ? 1.0 : (step - start) / (p.end_step - start);
            return {&p, std::min(pct, 1.0)};
        }
        start = p.end_step;
    }
    return {&phases_.back(), 1.0};  // not reached: the last phase takes every step
}

template <class T>
double OneCycleLR<T>::anneal(double start, double end, double pct) const {
    if (options_.anneal_strategy() == OneCycleLROptions::Anneal::linear) return (end - start) * pct + start;
    return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
}

template <class T>
double OneCycleLR<T>::lr_at(std::int64_t epoch, double max_lr) const {
    const auto [phase, pct] = phase_at(epoch);
    return anneal(phase->start_lr * max_lr, phase->end_lr * max_lr, pct);
}

template <class T>
std::optional<double> OneCycleLR<T>::momentum_at(std::int64_t epoch) const {
    if (!options_.cycle_momentum()) return std::nullopt;
    const auto [phase, pct] = phase_at(epoch);
    // Within its ends: a cosine rounded one ulp past max_momentum could leave Adam's β1 range.
    const double low = std::min(phase->start_momentum, phase->end_momentum), high = std::max(phase->start_momentum, phase->end_momentum);
    return std::clamp(anneal(phase->start_momentum, phase->end_momentum, pct), low, high);
}

template <class T>
ReduceLROnPlateau<T>::ReduceLROnPlateau(Optimizer<T>& optimizer, ReduceLROnPlateauOptions options)
    : optimizer_(optimizer), options_(std::move(options)) {
    const auto& o = options_;
    const char* who = "ReduceLROnPlateau";
    if (!(o.factor() > 0 && o.factor() < 1)) throw std::invalid_argument(fmt::format("{}: factor = {} must be in (0, 1)", who, o.factor()));
    if (o.patience() < 0) throw std::invalid_argument(fmt::format("{}: patience = {} must be >= 0", who, o.patience()));
    if (o.cooldown() < 0) throw std::invalid_argument(fmt::format("{}: cooldown = {} must be >= 0", who, o.cooldown()));
    for (const auto& [what, value] : {std::pair{"threshold", o.threshold()}, std::pair{"eps", o.eps()}, std::pair{"min_lr", o.min_lr()}}) {
        if (!(value >= 0) || !std::isfinite(value)) throw std::invalid_argument(fmt::format("{}: {} = {} must be finite and >= 0", who, what, value));
    }
    const std::size_t groups = optimizer.num_param_groups();
    if (!o.min_lrs().empty() && o.min_lrs().size() != groups) {
        throw std::invalid_argument(fmt::format("{}: {} min_lrs for {} parameter groups", who, o.min_lrs().size(), groups));
    }
    min_lrs_ = o.min_lrs().empty() ? std::vector<double>(groups, o.min_lr()) : o.min_lrs();
    for (std::size_t g = 0; g < groups; ++g) {
        if (!(min_lrs_[g] >= 0) || !std::isfinite(min_lrs_[g])) {
            throw std::invalid_argument(fmt::format("{}: min_lr {} of group {} must be finite and >= 0", who, min_lrs_[g], g));
        }
    }
    best_ = o.mode() == ReduceLROnPlateauOptions::Mode::min ? std::numeric_limits<double>::infinity()
                                                            : -std::numeric_limits<double>::infinity();
}

template <class T>
bool ReduceLROnPlateau<T>::better(double metric) const {
    const auto& o = options_;
    const bool min = o.mode() == ReduceLROnPlateauOptions::Mode::min;
    if (o.threshold_mode() == ReduceLROnPlateauOptions::ThresholdMode::rel) {
        return min ? metric < best_ * (1 - o.threshold()) : metric > best_ * (o.threshold() + 1);
    }
    return min ? metric < best_ - o.threshold() : metric > best_ + o.threshold();
}

template <class T>
void ReduceLROnPlateau<T>::step(double metric) {
    ++last_epoch_;
    if (better(metric)) {
        best_ = metric;
        num_bad_epochs_ = 0;
    } else {
        ++num_bad_epochs_;
    }
    if (cooldown_counter_ > 0) {  // bad steps in the cooldown do not count
        --cooldown_counter_;
        num_bad_epochs_ = 0;
    }
    if (num_bad_epochs_ > options_.patience()) {
        for (std::size_t g = 0; g < min_lrs_.size(); ++g) {
            const double old_lr = optimizer_.lr(g), new_lr = std::max(old_lr * options_.factor(), min_lrs_[g]);
            if (old_lr - new_lr > options_.eps()) optimizer_.set_lr(g, new_lr);
        }
        cooldown_counter_ = options_.cooldown();
        num_bad_epochs_ = 0;
    }
}

template <class T>
std::map<std::string, std::string> ReduceLROnPlateau<T>::state_dict() const {
    return {{"plateau.best", fmt::format("{:a}", best_)},  // hexadecimal: the exact double (inf too)
            {"plateau.num_bad_epochs", std::to_string(num_bad_epochs_)},
            {"plateau.cooldown_counter", std::to_string(cooldown_counter_)},
            {"plateau.last_epoch", std::to_string(last_epoch_)},
            {"plateau.mode", options_.mode() == ReduceLROnPlateauOptions::Mode::min ? "min" : "max"}};
}

template <class T>
void ReduceLROnPlateau<T>::load_state_dict(const std::map<std::string, std::string>& state) {
    const auto entry = [&](const std::string& key) {
        const auto it = state.find(key);
        if (it == state.end()) throw std::invalid_argument(fmt::format("ReduceLROnPlateau.load_state_dict: no '{}' entry", key));
        return it->second;
    };
    const auto bad = [](const std::string& key, const std::string& text) {
        return std::invalid_argument(fmt::format("ReduceLROnPlateau.load_state_dict: '{}' = '{}' is malformed", key, text));
    };
    const auto count = [&](const std::string& key) {
        const std::string text = entry(key);
        const std::optional<std::int64_t> value = whole_integer(text);
        if (!value || *value < 0) throw bad(key, text);
        return *value;
    };
    const std::string mode = entry("plateau.mode");
    if (mode != (options_.mode() == ReduceLROnPlateauOptions::Mode::min ? "min" : "max")) {
        throw std::invalid_argument(fmt::format("ReduceLROnPlateau.load_state_dict: the state is of mode '{}'", mode));
    }
    const std::string best_text = entry("plateau.best");
    const std::optional<double> best = whole_double(best_text);
    if (!best || std::isnan(*best)) throw bad("plateau.best", best_text);
    const std::int64_t bad_epochs = count("plateau.num_bad_epochs"), cooldown = count("plateau.cooldown_counter"),
                       epoch = count("plateau.last_epoch");
    best_ = *best;
    num_bad_epochs_ = bad_epochs;
    cooldown_counter_ = cooldown;
    last_epoch_ = epoch;
}

template class LRScheduler<float>;
template class LRScheduler<double>;
template class StepLR<float>;
template class StepLR<double>;
template class ExponentialLR<float>;
template class ExponentialLR<double>;
template class CosineWarmupLR<float>;
template class CosineWarmupLR<double>;
template class LambdaLR<float>;
template class LambdaLR<double>;
template class OneCycleLR<float>;
template class OneCycleLR<double>;
template class ReduceLROnPlateau<float>;
template class ReduceLROnPlateau<double>;

}  // namespace xgrad::optim
