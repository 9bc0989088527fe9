#include "scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include <fmt/format.h>

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
    last_epoch_ = epoch;
    for (std::size_t g = 0; g < base_lrs_.size(); ++g) optimizer_.set_lr(g, lr_at(epoch, base_lrs_[g]));
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

template class LRScheduler<float>;
template class LRScheduler<double>;
template class StepLR<float>;
template class StepLR<double>;
template class ExponentialLR<float>;
template class ExponentialLR<double>;
template class CosineWarmupLR<float>;
template class CosineWarmupLR<double>;

}  // namespace xgrad::optim
