// The update rules, each as torch.optim (1.13) writes it, on raw arrays.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "../tensor/isa_kernels.hpp"
#include "adam_kernel.hpp"
#include "optimizer.hpp"

namespace xgrad::optim {

namespace {
// Every option must be finite (a NaN passes no comparison, so `ok` alone could not catch it) and satisfy `ok`.
void check(std::string_view who, std::string_view what, double value, bool ok) {
    if (!ok || !std::isfinite(value)) throw std::invalid_argument(fmt::format("{}: invalid {} = {}", who, what, value));
}
}  // namespace

template <class T>
SGD<T>::SGD(std::vector<Parameter<T>> params, SGDOptions o) : SGD(std::vector<ParamGroup<T>>{std::move(params)}, o) {}

template <class T>
SGD<T>::SGD(std::vector<ParamGroup<T>> groups, SGDOptions o)
    : Optimizer<T>("SGD", std::move(groups), o.lr(), o.weight_decay(), {"momentum_buffer"}, MomentumKind::factor, o.momentum()),
      options_(o) {
    check("SGD", "momentum", o.momentum(), o.momentum() >= 0);
    check("SGD", "dampening", o.dampening(), o.dampening() >= 0 && o.dampening() <= 1);
    if (o.nesterov() && (o.momentum() <= 0 || o.dampening() != 0)) {
        throw std::invalid_argument("SGD: nesterov needs momentum > 0 and dampening = 0");
    }
}

template <class T>
bool SGD<T>::uses_buffer(std::size_t) const {
    return this->any_momentum();
}

template <class T>
void SGD<T>::update(std::size_t i, T* p, const T* grad, std::size_t n, std::int64_t, const GroupRates& rates) {
    const auto& o = options_;
    const T lr = static_cast<T>(rates.lr), mu = static_cast<T>(rates.momentum), wd = static_cast<T>(rates.weight_decay);
    const T keep = static_cast<T>(1.0 - o.dampening());
    T* buf = this->buffer(0, i);
    const bool starts = this->buffer_fresh(0);  // torch: a new momentum buffer is the gradient itself
    for (std::size_t k = 0; k < n; ++k) {
        T g = grad[k] + wd * p[k];
        if (rates.momentum != 0) {
            buf[k] = starts ? g : mu * buf[k] + keep * g;
            g = o.nesterov() ? g + mu * buf[k] : buf[k];
        }
        p[k] -= lr * g;
    }
}

template <class T>
Adam<T>::Adam(std::vector<Parameter<T>> params, AdamOptions o) : Adam("Adam", {std::move(params)}, o, false) {}

template <class T>
Adam<T>::Adam(std::vector<ParamGroup<T>> groups, AdamOptions o) : Adam("Adam", std::move(groups), o, false) {}

template <class T>
Adam<T>::Adam(std::string name, std::vector<ParamGroup<T>> groups, AdamOptions o, bool decoupled)
    : Optimizer<T>(std::move(name), std::move(groups), o.lr(), o.weight_decay(), {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
                   MomentumKind::beta1, o.beta1()),
      options_(o), decoupled_(decoupled) {
    check(this->name(), "beta1", o.beta1(), o.beta1() >= 0 && o.beta1() < 1);
    check(this->name(), "beta2", o.beta2(), o.beta2() >= 0 && o.beta2() < 1);
    check(this->name(), "eps", o.eps(), o.eps() >= 0);
}

template <class T>
bool Adam<T>::uses_buffer(std::size_t b) const {
    return b != 2 || options_.amsgrad();
}

template <class T>
void Adam<T>::update(std::size_t i, T* p, const T* grad, std::size_t n, std::int64_t step, const GroupRates& rates) {
    const auto& o = options_;
    const double lr = rates.lr;
    const double correction1 = 1 - std::pow(rates.momentum, static_cast<double>(step));  // β1 as it is now, as torch
    const double correction2 = 1 - std::pow(o.beta2(), static_cast<double>(step));
    const T step_size = static_cast<T>(lr / correction1), root2 = static_cast<T>(std::sqrt(correction2));
    const T b1 = static_cast<T>(rates.momentum), b2 = static_cast<T>(o.beta2()), eps = static_cast<T>(o.eps());
    const T wd = static_cast<T>(rates.weight_decay), decay = static_cast<T>(1 - lr * rates.weight_decay);
    T* m = this->buffer(0, i);
    T* v = this->buffer(1, i);
    T* v_max = this->buffer(2, i);
    const AdamCoefficients<T> k{b1, b2, step_size, root2, eps, wd, decay, decoupled_, o.amsgrad()};
    XGRAD_ISA_PICK(adam_update<T>)(p, grad, m, v, v_max, n, k);
}

template <class T>
AdamW<T>::AdamW(std::vector<Parameter<T>> params, AdamOptions o) : Adam<T>("AdamW", {std::move(params)}, o, true) {}

template <class T>
AdamW<T>::AdamW(std::vector<ParamGroup<T>> groups, AdamOptions o) : Adam<T>("AdamW", std::move(groups), o, true) {}

template <class T>
Adagrad<T>::Adagrad(std::vector<Parameter<T>> params, AdagradOptions o)
    : Adagrad(std::vector<ParamGroup<T>>{std::move(params)}, o) {}

template <class T>
Adagrad<T>::Adagrad(std::vector<ParamGroup<T>> groups, AdagradOptions o)
    : Optimizer<T>("Adagrad", std::move(groups), o.lr(), o.weight_decay(), {"sum"}), options_(o) {
    check("Adagrad", "lr_decay", o.lr_decay(), o.lr_decay() >= 0);
    check("Adagrad", "eps", o.eps(), o.eps() >= 0);
    check("Adagrad", "initial_accumulator_value", o.initial_accumulator_value(), o.initial_accumulator_value() >= 0);
}

template <class T>
void Adagrad<T>::update(std::size_t i, T* p, const T* grad, std::size_t n, std::int64_t step,
                        const GroupRates& rates) {
    const auto& o = options_;
    const T clr = static_cast<T>(rates.lr / (1 + static_cast<double>(step - 1) * o.lr_decay()));
    const T wd = static_cast<T>(rates.weight_decay), eps = static_cast<T>(o.eps());
    T* sum = this->buffer(0, i);
    for (std::size_t k = 0; k < n; ++k) {
        const T g = grad[k] + wd * p[k];
        sum[k] += g * g;
        p[k] -= clr * g / (std::sqrt(sum[k]) + eps);
    }
}

template <class T>
RMSprop<T>::RMSprop(std::vector<Parameter<T>> params, RMSpropOptions o)
    : RMSprop(std::vector<ParamGroup<T>>{std::move(params)}, o) {}

template <class T>
RMSprop<T>::RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions o)
    : Optimizer<T>("RMSprop", std::move(groups), o.lr(), o.weight_decay(), {"square_avg", "momentum_buffer", "grad_avg"},
                   MomentumKind::factor, o.momentum()),
      options_(o) {
    check("RMSprop", "alpha", o.alpha(), o.alpha() >= 0);
    check("RMSprop", "momentum", o.momentum(), o.momentum() >= 0);
    check("RMSprop", "eps", o.eps(), o.eps() >= 0);
}

template <class T>
bool RMSprop<T>::uses_buffer(std::size_t b) const {
    return b == 0 || (b == 1 && this->any_momentum()) || (b == 2 && options_.centered());
}

template <class T>
void RMSprop<T>::update(std::size_t i, T* p, const T* grad, std::size_t n, std::int64_t,
                        const GroupRates& rates) {
    const auto& o = options_;
    const T lr = static_cast<T>(rates.lr), alpha = static_cast<T>(o.alpha()), eps = static_cast<T>(o.eps());
    const T wd = static_cast<T>(rates.weight_decay), mu = static_cast<T>(rates.momentum);
    T* sq = this->buffer(0, i);
    T* buf = this->buffer(1, i);
    T* mean = this->buffer(2, i);
    for (std::size_t k = 0; k < n; ++k) {
        const T g = grad[k] + wd * p[k];
        sq[k] = alpha * sq[k] + (1 - alpha) * g * g;
        T avg;
        if (o.centered()) {
            mean[k] = alpha * mean[k] + (1 - alpha) * g;
            avg = std::sqrt(std::max(sq[k] - mean[k] * mean[k], T(0))) + eps;  // rounding can dip below 0
        } else {
            avg = std::sqrt(sq[k]) + eps;
        }
        if (rates.momentum > 0) {
            buf[k] = mu * buf[k] + g / avg;
            p[k] -= lr * buf[k];
        } else {
            p[k] -= lr * g / avg;
        }
    }
}

template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template class AdamW<float>;
template class AdamW<double>;
template class Adagrad<float>;
template class Adagrad<double>;
template class RMSprop<float>;
template class RMSprop<double>;

}  // namespace xgrad::optim
