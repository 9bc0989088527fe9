#include "clip.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace xgrad::nn {

template <class T>
double clip_grad_norm(const std::vector<Parameter<T>>& parameters, double max_norm, double norm_type) {
    if (!(max_norm > 0)) throw std::invalid_argument(fmt::format("clip_grad_norm: max_norm = {} must be positive", max_norm));
    const bool infinity = std::isinf(norm_type);
    if (!infinity && norm_type != 2.0) {
        throw std::invalid_argument(fmt::format("clip_grad_norm: norm_type = {} (supported: 2, inf)", norm_type));
    }
    double total = 0;
    for (const auto& p : parameters) {
        for (T g : p.grad()) {
            const double a = std::abs(static_cast<double>(g));
            total = infinity ? std::max(total, a) : total + a * a;
            if (std::isnan(a)) total = a;
        }
    }
    if (!infinity) total = std::sqrt(total);
    if (!std::isfinite(total)) return total;
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
        for (auto p : parameters) p.grad() *= static_cast<T>(coef);
    }
    return total;
}

template <class T>
void clip_grad_value(const std::vector<Parameter<T>>& parameters, double clip_value) {
    if (!(clip_value >= 0)) {
        throw std::invalid_argument(fmt::format("clip_grad_value: clip_value = {} must be non-negative", clip_value));
    }
    const T c = static_cast<T>(clip_value);
    for (auto p : parameters) {
        for (T& g : p.grad()) g = std::clamp(g, -c, c);
    }
}

template double clip_grad_norm(const std::vector<Parameter<float>>&, double, double);
template double clip_grad_norm(const std::vector<Parameter<double>>&, double, double);
template void clip_grad_value(const std::vector<Parameter<float>>&, double);
template void clip_grad_value(const std::vector<Parameter<double>>&, double);

}  // namespace xgrad::nn
