// Losses and the row-gather / masking layers that sit next to them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <xtensor/xmath.hpp>

#include "../tensor/isa_kernels.hpp"
#include "../tensor/random.hpp"
#include "ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad {

// The softmax's rows (loss_rows.cpp), compiled once per instruction set.
XGRAD_FOR_EACH_ISA(template <class T> T row_max(const T* row, std::size_t n);
                   template <class T> T exp_shifted(const T* row, T shift, std::size_t n, T* out);)

namespace {
// Which positions of logits (..., C) count, and how much: w_n = mask_n · [t_n ≠ ignore_index], and
// their sum (the mean's denominator).
template <class T>
struct PositionWeights {
    std::vector<T> weight;
    T total = 0;
};

// The weights after checking the shapes, the targets' range, the mask's values and that their sum
// is finite, naming `op`.
template <class T>
PositionWeights<T> position_weights(const char* op, const Shape& shape, const Indices& targets, std::int64_t ignore_index,
                                const std::optional<Tensor<T>>& mask) {
    if (shape.empty()) throw ShapeError(fmt::format("{}: logits must have a class axis, got a 0-d tensor", op));
    const Shape lead(shape.begin(), shape.end() - 1);
    if (shape_of(targets) != lead) {
        throw ShapeError(fmt::format("{}: logits {} (classes last) need targets of shape {}, got {}", op, shape_str(shape),
                                     shape_str(lead), shape_str(shape_of(targets))));
    }
    if (mask && shape_of(*mask) != lead) {
        throw ShapeError(fmt::format("{}: logits {} need a mask of shape {}, got {}", op, shape_str(shape), shape_str(lead),
                                     shape_str(shape_of(*mask))));
    }
    const std::size_t classes = shape.back(), rows = numel(lead);
    std::vector<T> weight(rows);
    T total = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        const std::int64_t t = targets.data()[r];
        if (t == ignore_index) continue;
        if (t < 0 || static_cast<std::size_t>(t) >= classes) {
            throw std::invalid_argument(fmt::format("{}: target {} at position {} is out of range for {} classes", op, t, r,
                                                    classes));
        }
        weight[r] = mask ? mask->data()[r] : T(1);
        if (!(weight[r] >= 0) || !std::isfinite(weight[r])) {
            throw std::invalid_argument(fmt::format("{}: mask value {} at position {} is not a finite weight >= 0", op,
                                                    weight[r], r));
        }
        total += weight[r];
    }
    if (!std::isfinite(total)) {
        throw std::invalid_argument(fmt::format("{}: the mask's weights sum to {}, beyond {}'s range: scale them down", op, total,
                                                std::is_same_v<T, float> ? "float" : "double"));
    }
    return {std::move(weight), total};
}
}  // namespace

// loss = Σ_n w_n (lse_n - x[n, t_n]) / Σ_n w_n  (mean), without the division (sum), or each w_n (...)
// (none), with w_n = mask_n · [t_n ≠ ignore_index];   dx[n] += dy · w_n / denom · (softmax(x[n]) - onehot(t_n))
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const Indices& targets, CrossEntropyOptions options,
                     const std::optional<Tensor<Scalar<T>>>& mask) {
    const Shape shape = logits.shape();
    PositionWeights<T> counted = position_weights<T>("cross_entropy", shape, targets, options.ignore_index(), mask);
    std::vector<T> weight = std::move(counted.weight);
    const T denom = counted.total;
    const std::size_t classes = shape.back(), rows = weight.size();
    // With nothing counted the mean is 0/0 = NaN, as PyTorch's (its gradient is zero: no row counts).
    const bool mean = options.reduction() == Reduction::mean, each = options.reduction() == Reduction::none;
    const T scale = !mean ? T(1) : denom > 0 ? T(1) / denom : std::numeric_limits<T>::quiet_NaN();

    // One pass per row: the max, the exponentials (xsimd, a batch at a time) and the log-sum-exp;
    // the softmax is kept, so backward is a multiply-add, with no exponential.
    const T* x = logits.value().data();
    std::vector<T> softmax(rows * classes);
    const auto row_max_of = XGRAD_ISA_PICK(row_max<T>);
    const auto exp_shifted_of = XGRAD_ISA_PICK(exp_shifted<T>);
    T total = 0;
    Tensor<T> y = each ? Tensor<T>::from_shape(shape_of(targets)) : Tensor<T>::from_shape({});
    if (each) std::fill(y.begin(), y.end(), T(0));
    for (std::size_t r = 0; r < rows; ++r) {
        if (weight[r] == T(0)) continue;
        const T* row = x + r * classes;
        T* p = softmax.data() + r * classes;
        const T m = row_max_of(row, classes);
        const T s = exp_shifted_of(row, m, classes, p);
        const T inverse = T(1) / s;
        for (std::size_t k = 0; k < classes; ++k) p[k] *= inverse;
        const T loss = weight[r] * (m + std::log(s) - row[targets.data()[r]]);
        if (each) y.data()[r] = loss;
        total += loss;
    }
    if (!each) y.data()[0] = total * scale;
    return logits.tape().record("cross_entropy", std::move(y), {logits}, [targets, weight = std::move(weight),
                                                         softmax = std::move(softmax), scale, classes, each](BackwardContext<T>& c) {
        T* dx = c.input_grad(0).data();
        const T* dy = c.output_grad().data();
        for (std::size_t r = 0; r < weight.size(); ++r) {
            if (weight[r] == T(0)) continue;
            const T g = (each ? dy[r] : dy[0]) * weight[r] * scale;
            const T* p = softmax.data() + r * classes;
            T* d = dx + r * classes;
            for (std::size_t k = 0; k < classes; ++k) d[k] += g * p[k];
            d[static_cast<std::size_t>(targets.data()[r])] -= g;
        }
    }, Saves::nothing());
}

namespace {
// The weight of every element of an input of `shape`, from a mask of its shape or of its leading
// axes (repeated over the rest), checked, naming `op`. Empty without a mask: every weight 1.
template <class T>
std::vector<T> element_weights(const char* op, const Shape& shape, const std::optional<Tensor<T>>& mask) {
    if (!mask) return {};
    const Shape& m = shape_of(*mask);
    if (m.size() > shape.size() || !std::equal(m.begin(), m.end(), shape.begin())) {
        throw ShapeError(fmt::format("{}: input {} needs a mask of its shape or of its leading axes, got {}", op,
                                     shape_str(shape), shape_str(m)));
    }
    const std::size_t positions = numel(m), each = positions ? numel(shape) / positions : 0;
    std::vector<T> weight(numel(shape));
    for (std::size_t r = 0; r < positions; ++r) {
        const T w = mask->data()[r];
        if (!(w >= 0) || !std::isfinite(w)) {
            throw std::invalid_argument(fmt::format("{}: mask value {} at position {} is not a finite weight >= 0", op, w, r));
        }
        std::fill_n(weight.begin() + r * each, each, w);
    }
    return weight;
}

// What an elementwise loss is at one element: its value and its slopes in the input and the target.
template <class T>
struct LossAt {
    T value, d_input, d_target;
};

// loss_i = f(x_i, y_i) weighted by w_i and reduced;   dx_i += g_i ∂f/∂x,  dy_i += g_i ∂f/∂y with
// g_i = dloss · w_i / Σw (mean), dloss · w_i (sum), dloss_i · w_i (none). `at(x, y, i)` gives f and its
// slopes at element i.
template <class T, class At>
Var<T> elementwise_loss(const char* op, const Var<T>& input, const Var<T>& target, Reduction reduction,
                        const std::optional<Tensor<T>>& mask, At at) {
    if (input.shape() != target.shape()) {
        throw ShapeError(fmt::format("{}: input {} and target {} must have the same shape", op, shape_str(input.shape()),
                                     shape_str(target.shape())));
    }
    const std::size_t n = input.numel();
    std::vector<T> weight = element_weights<T>(op, input.shape(), mask);
    const auto w = [&weight](std::size_t i) { return weight.empty() ? T(1) : weight[i]; };
    const T* x = input.value().data();
    const T* y = target.value().data();
    std::vector<T> d_input(n), d_target(n);
    Tensor<T> out = reduction == Reduction::none ? Tensor<T>::from_shape(input.shape()) : Tensor<T>::from_shape({});
    // Summed in double: a float count stops at 2^24 and a long float sum drifts.
    double total = 0, counted = weight.empty() ? static_cast<double>(n) : 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const LossAt<T> l = at(x[i], y[i], i);
        d_input[i] = l.d_input;
        d_target[i] = l.d_target;
        const T wl = w(i) == T(0) ? T(0) : w(i) * l.value;  // a weight of 0 drops even an infinite loss
        if (reduction == Reduction::none) out.data()[i] = wl;
        total += static_cast<double>(wl);
        if (!weight.empty()) counted += static_cast<double>(weight[i]);
    }
    if (!std::isfinite(counted)) {
        throw std::invalid_argument(fmt::format("{}: the mask's weights sum to {}, beyond {}'s range: scale them down", op,
                                                counted, std::is_same_v<T, float> ? "float" : "double"));
    }
    // With nothing counted the mean is 0/0 = NaN, as PyTorch's (its gradient is zero).
    const T scale = reduction != Reduction::mean ? T(1) : counted > 0 ? static_cast<T>(1 / counted) : std::numeric_limits<T>::quiet_NaN();
    if (reduction != Reduction::none) out.data()[0] = static_cast<T>(reduction == Reduction::mean ? total / counted : total);
    return input.tape().record(op, std::move(out), {input, target},
        [reduction, scale, weight = std::move(weight), d_input = std::move(d_input), d_target = std::move(d_target)](BackwardContext<T>& c) {
            const T* dy = c.output_grad().data();
            const bool to_input = c.needs_grad(0), to_target = c.needs_grad(1);
            T* dx = to_input ? c.input_grad(0).data() : nullptr;
            T* dt = to_target ? c.input_grad(1).data() : nullptr;
            for (std::size_t i = 0; i < d_input.size(); ++i) {
                const T wi = weight.empty() ? T(1) : weight[i];
                if (wi == T(0)) continue;
                const T g = (reduction == Reduction::none ? dy[i] : dy[0] * scale) * wi;
                if (to_input) dx[i] += g * d_input[i];
                if (to_target) dt[i] += g * d_target[i];
            }
        }, Saves::nothing());
}

// -1, 0 or 1 as x is below, at or above 0.
template <class T>
T sign(T x) {
    return static_cast<T>((x > 0) - (x < 0));
}
}  // namespace

// (x - y)^2;   ∂/∂x = 2(x - y) = -∂/∂y
template <class T>
Var<T> mse_loss(const Var<T>& input, const Var<T>& target, MSELossOptions options, const std::optional<Tensor<Scalar<T>>>& mask) {
    return elementwise_loss<T>("mse_loss", input, target, options.reduction(), mask, [](T x, T y, std::size_t) {
        const T d = x - y;
        return LossAt<T>{d * d, 2 * d, -2 * d};
    });
}

// |x - y|;   ∂/∂x = sign(x - y) = -∂/∂y (0 at 0, as torch's)
template <class T>
Var<T> l1_loss(const Var<T>& input, const Var<T>& target, L1LossOptions options, const std::optional<Tensor<Scalar<T>>>& mask) {
    return elementwise_loss<T>("l1_loss", input, target, options.reduction(), mask, [](T x, T y, std::size_t) {
        const T d = x - y, s = sign(d);
        return LossAt<T>{std::abs(d), s, -s};
    });
}

// d^2 / 2β where |d| < β, else |d| - β/2 (d = x - y);   ∂/∂x = d/β or sign(d) = -∂/∂y
template <class T>
Var<T> smooth_l1_loss(const Var<T>& input, const Var<T>& target, SmoothL1LossOptions options,
                      const std::optional<Tensor<Scalar<T>>>& mask) {
    if (!(options.beta() >= 0) || !std::isfinite(options.beta())) {
        throw std::invalid_argument(fmt::format("smooth_l1_loss: beta must be finite and >= 0, got {}", options.beta()));
    }
    const T beta = static_cast<T>(options.beta());
    return elementwise_loss<T>("smooth_l1_loss", input, target, options.reduction(), mask, [beta](T x, T y, std::size_t) {
        const T d = x - y;
        if (std::abs(d) < beta) return LossAt<T>{d * d / (2 * beta), d / beta, -d / beta};
        const T s = sign(d);
        return LossAt<T>{std::abs(d) - beta / 2, s, -s};
    });
}

// d^2 / 2 where |d| <= δ, else δ(|d| - δ/2) (d = x - y);   ∂/∂x = d or δ sign(d) = -∂/∂y
template <class T>
Var<T> huber_loss(const Var<T>& input, const Var<T>& target, HuberLossOptions options, const std::optional<Tensor<Scalar<T>>>& mask) {
    if (!(options.delta() > 0) || !std::isfinite(options.delta())) {
        throw std::invalid_argument(fmt::format("huber_loss: delta must be finite and > 0, got {}", options.delta()));
    }
    const T delta = static_cast<T>(options.delta());
    return elementwise_loss<T>("huber_loss", input, target, options.reduction(), mask, [delta](T x, T y, std::size_t) {
        const T d = x - y;
        if (std::abs(d) <= delta) return LossAt<T>{d * d / 2, d, -d};
        const T s = delta * sign(d);
        return LossAt<T>{delta * (std::abs(d) - delta / 2), s, -s};
    });
}

// p y softplus(-x) + (1 - y) softplus(x), p the class's pos_weight;
// ∂/∂x = (1 - y) σ(x) - p y σ(-x),  ∂/∂y = p softplus(-x) - softplus(x)
template <class T>
Var<T> binary_cross_entropy_with_logits(const Var<T>& input, const Var<T>& target, BCEWithLogitsLossOptions<Scalar<T>> options,
                                        const std::optional<Tensor<Scalar<T>>>& mask) {
    const std::size_t classes = input.dim() == 0 ? 1 : input.shape().back();
    std::vector<T> pos_weight(classes, T(1));
    if (options.pos_weight()) {
        const Tensor<T>& p = *options.pos_weight();
        if (p.dimension() > 1 || (p.size() != classes && p.size() != 1)) {
            throw ShapeError(fmt::format("binary_cross_entropy_with_logits: input {} needs a pos_weight of shape {} or (1,), got {}",
                                         shape_str(input.shape()), shape_str(Shape{classes}), shape_str(shape_of(p))));
        }
        for (std::size_t c = 0; c < classes; ++c) pos_weight[c] = p.data()[p.size() == 1 ? 0 : c];
    }
    // softplus(z) = log(1 + e^z), computed as max(z, 0) + log1p(e^-|z|): no overflow for any z.
    const auto softplus = [](T z) { return std::max(z, T(0)) + std::log1p(std::exp(-std::abs(z))); };
    const auto sigmoid = [](T z) { return z >= 0 ? T(1) / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z)); };
    return elementwise_loss<T>("binary_cross_entropy_with_logits", input, target, options.reduction(), mask,
        [&pos_weight, classes, softplus, sigmoid](T x, T y, std::size_t i) {
            const T p = pos_weight[i % classes], up = softplus(x), down = softplus(-x);
            return LossAt<T>{p * y * down + (1 - y) * up, (1 - y) * sigmoid(x) - p * y * sigmoid(-x), p * down - up};
        });
}

// y[..., :] = weight[indices[...], :];   dweight[indices[...], :] += dy[..., :]
template <class T>
Var<T> embedding(const Var<T>& weight, const Indices& indices) {
    if (weight.dim() != 2) {
        throw ShapeError(fmt::format("embedding: weight must be 2-D (num_embeddings, dim), got {}",
                                     shape_str(weight.shape())));
    }
    const std::size_t rows = weight.shape()[0], dim = weight.shape()[1];
    for (std::size_t i = 0; i < indices.size(); ++i) {
        const std::int64_t id = indices.data()[i];
        if (id < 0 || static_cast<std::size_t>(id) >= rows) {
            throw std::invalid_argument(fmt::format("embedding: index {} at position {} is out of range for weight {}",
                                                    id, i, shape_str(weight.shape())));
        }
    }
    Shape out = shape_of(indices);
    out.push_back(dim);
    Tensor<T> y = Tensor<T>::from_shape(out);
    const T* w = weight.value().data();
    for (std::size_t i = 0; i < indices.size(); ++i) {
        std::copy_n(w + static_cast<std::size_t>(indices.data()[i]) * dim, dim, y.data() + i * dim);
    }
    return weight.tape().record("embedding", std::move(y), {weight}, [indices, dim](BackwardContext<T>& c) {
        T* dw = c.input_grad(0).data();
        const T* dy = c.output_grad().data();
        for (std::size_t i = 0; i < indices.size(); ++i) {
            T* row = dw + static_cast<std::size_t>(indices.data()[i]) * dim;
            for (std::size_t d = 0; d < dim; ++d) row[d] += dy[i * dim + d];
        }
    }, Saves::nothing());
}

// y = a · mask / (1 - p), mask ~ Bernoulli(1 - p);   da += dy · mask / (1 - p)
template <class T>
Var<T> dropout(const Var<T>& a, double p, Generator& gen, bool training) {
    if (!(p >= 0.0 && p <= 1.0)) throw std::invalid_argument(fmt::format("dropout: p = {} is not in [0, 1]", p));
    if (!training || p == 0.0) return a;
    Tensor<T> mask = bernoulli<T>(a.shape(), 1.0 - p, gen);
    if (p < 1.0) mask *= static_cast<T>(1.0 / (1.0 - p));
    Tensor<T> y = a.value() * mask;
    return a.tape().record("dropout", std::move(y), {a}, [mask = std::move(mask)](BackwardContext<T>& c) {
        c.accumulate(0, c.output_grad() * mask);
    }, Saves::nothing());
}

// Σ_n w_n [argmax x[n] = t_n] / Σ_n w_n, with w_n as cross_entropy counts positions.
template <class T>
double accuracy(const Var<T>& logits, const Indices& targets, CrossEntropyOptions options,
                const std::optional<Tensor<Scalar<T>>>& mask) {
    const Shape shape = logits.shape();
    const std::vector<T> weight = position_weights<T>("accuracy", shape, targets, options.ignore_index(), mask).weight;
    const Indices predicted = argmax(logits, -1);
    double correct = 0, counted = 0;
    for (std::size_t r = 0; r < weight.size(); ++r) {
        counted += weight[r];
        if (predicted.data()[r] == targets.data()[r]) correct += weight[r];
    }
    return counted > 0 ? correct / counted : std::numeric_limits<double>::quiet_NaN();
}

#define OPS_LOSS_INSTANCES(T)                                                                                   \
    template double accuracy(const Var<T>&, const Indices&, CrossEntropyOptions, const std::optional<Tensor<Scalar<T>>>&); \
    template Var<T> cross_entropy(const Var<T>&, const Indices&, CrossEntropyOptions,                          \
                                  const std::optional<Tensor<Scalar<T>>>&);                                            \
    template Var<T> mse_loss(const Var<T>&, const Var<T>&, MSELossOptions, const std::optional<Tensor<T>>&);             \
    template Var<T> l1_loss(const Var<T>&, const Var<T>&, L1LossOptions, const std::optional<Tensor<T>>&);               \
    template Var<T> smooth_l1_loss(const Var<T>&, const Var<T>&, SmoothL1LossOptions, const std::optional<Tensor<T>>&);  \
    template Var<T> huber_loss(const Var<T>&, const Var<T>&, HuberLossOptions, const std::optional<Tensor<T>>&);         \
    template Var<T> binary_cross_entropy_with_logits(const Var<T>&, const Var<T>&, BCEWithLogitsLossOptions<T>,          \
                                                     const std::optional<Tensor<T>>&);                                   \
    template Var<T> embedding(const Var<T>&, const Indices&);                                                 \
    template Var<T> dropout(const Var<T>&, double, Generator&, bool);
XGRAD_FOR_FLOAT_AND_DOUBLE(OPS_LOSS_INSTANCES)

}  // namespace xgrad
