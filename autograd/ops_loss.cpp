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

// loss = Σ_n w_n (lse_n - x[n, t_n]) / Σ_n w_n  (mean) or without the division (sum),
// with w_n = mask_n · [t_n ≠ ignore_index];   dx[n] += dy · w_n / denom · (softmax(x[n]) - onehot(t_n))
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const Indices& targets, CrossEntropyOptions options,
                     const std::optional<Tensor<Scalar<T>>>& mask) {
    const Shape shape = logits.shape();
    PositionWeights<T> counted = position_weights<T>("cross_entropy", shape, targets, options.ignore_index, mask);
    std::vector<T> weight = std::move(counted.weight);
    const T denom = counted.total;
    const std::size_t classes = shape.back(), rows = weight.size();
    // With nothing counted the mean is 0/0 = NaN, as PyTorch's (its gradient is zero: no row counts).
    const bool mean = options.reduction == CrossEntropyOptions::Reduction::mean;
    const T scale = !mean ? T(1) : denom > 0 ? T(1) / denom : std::numeric_limits<T>::quiet_NaN();

    // One pass per row: the max, the exponentials (xsimd, a batch at a time) and the log-sum-exp;
    // the softmax is kept, so backward is a multiply-add, with no exponential.
    const T* x = logits.value().data();
    std::vector<T> softmax(rows * classes);
    const auto row_max_of = XGRAD_ISA_PICK(row_max<T>);
    const auto exp_shifted_of = XGRAD_ISA_PICK(exp_shifted<T>);
    T total = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        if (weight[r] == T(0)) continue;
        const T* row = x + r * classes;
        T* p = softmax.data() + r * classes;
        const T m = row_max_of(row, classes);
        const T s = exp_shifted_of(row, m, classes, p);
        const T inverse = T(1) / s;
        for (std::size_t k = 0; k < classes; ++k) p[k] *= inverse;
        total += weight[r] * (m + std::log(s) - row[targets.data()[r]]);
    }
    Tensor<T> y = xt::xarray<T>(total * scale);
    return logits.tape().record("cross_entropy", std::move(y), {logits}, [targets, weight = std::move(weight),
                                                         softmax = std::move(softmax), scale, classes](BackwardContext<T>& c) {
        T* dx = c.input_grad(0).data();
        const T dy = c.output_grad().data()[0];
        for (std::size_t r = 0; r < weight.size(); ++r) {
            if (weight[r] == T(0)) continue;
            const T g = dy * weight[r] * scale;
            const T* p = softmax.data() + r * classes;
            T* d = dx + r * classes;
            for (std::size_t k = 0; k < classes; ++k) d[k] += g * p[k];
            d[static_cast<std::size_t>(targets.data()[r])] -= g;
        }
    }, Saves::nothing());
}

// y = mean((a - b)^2);   da += dy · 2(a - b)/N,  db -= dy · 2(a - b)/N
template <class T>
Var<T> mse_loss(const Var<T>& a, const Var<T>& b) {
    if (a.shape() != b.shape()) {
        throw ShapeError(fmt::format("mse_loss: input {} and target {} must have the same shape",
                                     shape_str(a.shape()), shape_str(b.shape())));
    }
    const T n = static_cast<T>(a.numel());
    Tensor<T> y = xt::xarray<T>(xt::sum(xt::square(a.value() - b.value()))() / n);
    return a.tape().record("mse_loss", std::move(y), {a, b}, [n](BackwardContext<T>& c) {
        Tensor<T> g = (c.output_grad().data()[0] * T(2) / n) * (c.input(0) - c.input(1));
        if (c.needs_grad(1)) c.accumulate(1, -g);
        if (c.needs_grad(0)) c.accumulate(0, std::move(g));
    }, Saves::inputs_of({0, 1}));
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
    const std::vector<T> weight = position_weights<T>("accuracy", shape, targets, options.ignore_index, mask).weight;
    const Indices predicted = argmax(logits, -1);
    double correct = 0, counted = 0;
    for (std::size_t r = 0; r < weight.size(); ++r) {
        counted += weight[r];
        if (predicted.data()[r] == targets.data()[r]) correct += weight[r];
    }
    return counted > 0 ? correct / counted : std::numeric_limits<double>::quiet_NaN();
}

#define XGRAD_INSTANTIATE(T)                                                                                   \
    template double accuracy(const Var<T>&, const Indices&, CrossEntropyOptions, const std::optional<Tensor<Scalar<T>>>&); \
    template Var<T> cross_entropy(const Var<T>&, const Indices&, CrossEntropyOptions,                          \
                                  const std::optional<Tensor<Scalar<T>>>&);                                            \
    template Var<T> mse_loss(const Var<T>&, const Var<T>&);                                                   \
    template Var<T> embedding(const Var<T>&, const Indices&);                                                 \
    template Var<T> dropout(const Var<T>&, double, Generator&, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad
