#include "clip.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace xgrad::nn {

template <class T>
double clip_grad_norm(const std::vector<Parameter<T>>& parameters, double max_norm, double norm_type) {
    if (!(max_norm > 0)) throw std::invalid_argument(fmt::format("clip_grad_norm: max_norm = {} must be positive", max_norm));
    const bool infinity = norm_type == std::numeric_limits<double>::infinity();  // not -inf: that would be the smallest magnitude
    if (!infinity && norm_type != 2.0) {
        throw std::invalid_argument(fmt::format("clip_grad_norm: norm_type = {} (supported: 2, inf)", norm_type));
    }
    // Over raw data, in double: four running sums, so that the additions do not wait on each other
    // (xtensor's iterators and a branch per value made this 4% of a training step). A NaN gradient
    // makes the norm NaN: the sums carry it; the max needs the explicit check.
    double total = 0;
    for (const auto& p : parameters) {
        const T* g = p.grad().data();
        const std::size_t n = p.grad().size();
        if (infinity) {
            for (std::size_t k = 0; k < n; ++k) {
                const double a = std::abs(static_cast<double>(g[k]));
                total = std::isnan(a) || std::isnan(total) ? std::numeric_limits<double>::quiet_NaN() : std::max(total, a);
            }
            continue;
        }
        double sums[4] = {0, 0, 0, 0};
        std::size_t k = 0;
        for (; k + 4 <= n; k += 4)
            for (std::size_t u = 0; u < 4; ++u) sums[u] += static_cast<double>(g[k + u]) * static_cast<double>(g[k + u]);
        for (; k < n; ++k) sums[0] += static_cast<double>(g[k]) * static_cast<double>(g[k]);
        total += (sums[0] + sums[1]) + (sums[2] + sums[3]);
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
