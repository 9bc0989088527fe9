// Reductions and the normalizations along an axis.
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include "axis_split.hpp"
#include "ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad {

using detail::AxisSplit;

namespace {
// Normalized, sorted, distinct axes; an empty list means every axis (as torch.sum(x, dim=[])).
std::vector<std::size_t> reduction_axes(std::string_view op, const std::vector<std::ptrdiff_t>& axes, std::size_t rank) {
    std::vector<std::size_t> out;
    for (std::ptrdiff_t a : axes) out.push_back(normalize_axis(op, a, rank));
    if (axes.empty()) for (std::size_t d = 0; d < rank; ++d) out.push_back(d);
    std::sort(out.begin(), out.end());
    if (std::adjacent_find(out.begin(), out.end()) != out.end()) {
        throw ShapeError(fmt::format("{}: axes [{}] repeat an axis", op, fmt::join(axes, ", ")));
    }
    return out;
}

// The input's shape with the reduced axes set to 1.
Shape kept_shape(const Shape& in, const std::vector<std::size_t>& axes) {
    Shape s = in;
    for (std::size_t a : axes) s[a] = 1;
    return s;
}

// Reduced output shape: kept as 1s with keepdims, removed otherwise.
Shape reduced_shape(const Shape& in, const std::vector<std::size_t>& axes, bool keepdims) {
    if (keepdims) return kept_shape(in, axes);
    Shape s;
    for (std::size_t d = 0; d < in.size(); ++d) {
        if (!std::binary_search(axes.begin(), axes.end(), d)) s.push_back(in[d]);
    }
    return s;
}

// sum (scale 1) or mean (scale 1/count) over axes.
template <class T>
Var<T> scaled_sum(const char* op, const Var<T>& a, const std::vector<std::ptrdiff_t>& axes_arg, bool keepdims,
                  bool average) {
    const Shape in = a.shape();
    const std::vector<std::size_t> axes = reduction_axes(op, axes_arg, in.size());
    std::size_t count = 1;
    for (std::size_t ax : axes) count *= in[ax];
    const T scale = average ? T(1) / static_cast<T>(count) : T(1);
    Tensor<T> y;
    if (a.numel() == 0) {  // xtensor's reducers do pointer arithmetic on null for empty input
        y = Tensor<T>::from_shape(reduced_shape(in, axes, false));
        y.fill(average ? std::numeric_limits<T>::quiet_NaN() : T(0));  // as torch: sum 0, mean NaN
    } else if (count == a.numel()) {  // everything: a flat loop, not xtensor's strided reducer (a loss, every step)
        const T* data = a.value().data();
        T total = 0;
        for (std::size_t i = 0; i < count; ++i) total += data[i];
        y = Tensor<T>::from_shape({});
        y() = total * scale;
    } else {
        y = xt::sum(a.value(), axes);
        if (average) y *= scale;
    }
    y.reshape(reduced_shape(in, axes, keepdims));
    Shape kept = kept_shape(in, axes);
    const bool everything = count == a.numel();
    return a.tape().record(op, std::move(y), {a}, [kept, scale, everything](BackwardContext<T>& c) {
        if (everything) {  // one value to spread: a fill, not a broadcast expression
            if (!c.needs_grad(0)) return;
            bool fresh = false;
            Tensor<T>& grad = c.input_grad(0, &fresh);
            const T g = *c.output_grad().data() * scale;
            T* out = grad.data();
            for (std::size_t i = 0; i < grad.size(); ++i) out[i] = fresh ? g : out[i] + g;
            return;
        }
        Tensor<T> g = c.output_grad() * scale;
        g.reshape(kept);
        c.accumulate(0, xt::broadcast(g, c.input_shape(0)));
    }, Saves::nothing());
}

// x - logsumexp(x) along the split's axis, shifted by the maximum so large inputs cannot overflow.
template <class T>
Tensor<T> log_softmax_values(const Tensor<T>& input, const AxisSplit& s) {
    Tensor<T> y = Tensor<T>::from_shape(input.shape());
    const T* x = input.data();
    for (std::size_t o = 0; o < s.outer; ++o) {
        for (std::size_t i = 0; i < s.inner; ++i) {
            T m = -std::numeric_limits<T>::infinity();
            for (std::size_t k = 0; k < s.n; ++k) m = std::max(m, x[s.at(o, k, i)]);
            T total = 0;
            for (std::size_t k = 0; k < s.n; ++k) total += std::exp(x[s.at(o, k, i)] - m);
            const T log_norm = m + std::log(total);
            for (std::size_t k = 0; k < s.n; ++k) y.data()[s.at(o, k, i)] = x[s.at(o, k, i)] - log_norm;
        }
    }
    return y;
}
}  // namespace

// y = sum(a);   da += dy (broadcast)
template <class T>
Var<T> sum(const Var<T>& a) {
    return scaled_sum("sum", a, {}, false, false);
}

// y = sum(a, axes);   da += dy broadcast over the summed axes
template <class T>
Var<T> sum(const Var<T>& a, const std::vector<std::ptrdiff_t>& axes, bool keepdims) {
    return scaled_sum("sum", a, axes, keepdims, false);
}

// y = mean(a);   da += dy / count
template <class T>
Var<T> mean(const Var<T>& a) {
    return scaled_sum("mean", a, {}, false, true);
}

// y = mean(a, axes);   da += dy / count broadcast over the averaged axes
template <class T>
Var<T> mean(const Var<T>& a, const std::vector<std::ptrdiff_t>& axes, bool keepdims) {
    return scaled_sum("mean", a, axes, keepdims, true);
}

namespace {
// The positions of the k largest (or smallest) values along the split's axis, in order, for every
// (outer, inner) pair: (outer, k, inner). NaN ranks above every number, as in PyTorch, so it is
// never silently skipped; equal values keep their order along the axis.
template <class T>
std::vector<std::size_t> ranked_positions(const T* x, const AxisSplit& s, std::size_t k, bool largest) {
    auto before = [largest](T a, T b) {
        if (std::isnan(a) || std::isnan(b)) return largest ? std::isnan(a) && !std::isnan(b) : !std::isnan(a) && std::isnan(b);
        return largest ? a > b : a < b;
    };
    std::vector<std::size_t> ranked(s.outer * k * s.inner), order(s.n);
    for (std::size_t o = 0; o < s.outer; ++o) {
        for (std::size_t i = 0; i < s.inner; ++i) {
            auto value = [&](std::size_t j) { return x[s.at(o, j, i)]; };
            if (k == 1) {  // one scan
                std::size_t best = 0;
                for (std::size_t j = 1; j < s.n; ++j)
                    if (before(value(j), value(best))) best = j;
                ranked[o * s.inner + i] = best;
                continue;
            }
            for (std::size_t j = 0; j < s.n; ++j) order[j] = j;
            std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                              [&](std::size_t p, std::size_t q) { return before(value(p), value(q)) || (!before(value(q), value(p)) && p < q); });
            for (std::size_t j = 0; j < k; ++j) ranked[(o * k + j) * s.inner + i] = order[j];
        }
    }
    return ranked;
}

// The values at ranked positions (outer, k, inner) of a, with the positions: y[o, j, i] = a[o, p_oji, i];
// da[o, p_oji, i] += dy[o, j, i].
template <class T>
Var<T> gather_ranked(const char* op, const Var<T>& a, const AxisSplit& s, std::size_t k, std::vector<std::size_t> ranked,
                     const Shape& out) {
    Tensor<T> y = Tensor<T>::from_shape(out);
    const T* x = a.value().data();
    for (std::size_t o = 0; o < s.outer; ++o)
        for (std::size_t j = 0; j < k; ++j)
            for (std::size_t i = 0; i < s.inner; ++i) y.data()[(o * k + j) * s.inner + i] = x[s.at(o, ranked[(o * k + j) * s.inner + i], i)];
    return a.tape().record(op, std::move(y), {a}, [s, k, ranked = std::move(ranked)](BackwardContext<T>& c) {
        T* dx = c.input_grad(0).data();
        const T* dy = c.output_grad().data();
        for (std::size_t o = 0; o < s.outer; ++o)
            for (std::size_t j = 0; j < k; ++j)
                for (std::size_t i = 0; i < s.inner; ++i) {
                    const std::size_t at = (o * k + j) * s.inner + i;
                    dx[s.at(o, ranked[at], i)] += dy[at];
                }
    }, Saves::nothing());
}

std::size_t nonempty_axis(const char* op, const Shape& in, std::ptrdiff_t axis_arg) {
    const std::size_t axis = normalize_axis(op, axis_arg, in.size());
    if (in[axis] == 0) throw ShapeError(fmt::format("{}: axis {} of shape {} is empty", op, axis, shape_str(in)));
    return axis;
}
}  // namespace

// y = max(a, axis);   da[argmax] += dy (the first maximal element along the axis)
template <class T>
Var<T> max(const Var<T>& a, std::ptrdiff_t axis_arg, bool keepdims) {
    const Shape in = a.shape();
    const std::size_t axis = nonempty_axis("max", in, axis_arg);
    const AxisSplit s(in, axis);
    return gather_ranked("max", a, s, 1, ranked_positions(a.value().data(), s, 1, true), reduced_shape(in, {axis}, keepdims));
}

// The first position of the largest value along axis (not differentiable: indices).
template <class T>
Indices argmax(const Var<T>& a, std::ptrdiff_t axis_arg, bool keepdims) {
    const Shape in = a.shape();
    const std::size_t axis = nonempty_axis("argmax", in, axis_arg);
    const AxisSplit s(in, axis);
    const std::vector<std::size_t> best = ranked_positions(a.value().data(), s, 1, true);
    Indices out = Indices::from_shape(reduced_shape(in, {axis}, keepdims));
    for (std::size_t r = 0; r < best.size(); ++r) out.data()[r] = static_cast<std::int64_t>(best[r]);
    return out;
}

// values = the k largest (smallest) along axis, in order;   da[position of values[j]] += dvalues[j]
template <class T>
TopK<T> topk(const Var<T>& a, std::int64_t k_arg, std::ptrdiff_t axis_arg, bool largest) {
    const Shape in = a.shape();
    const std::size_t axis = normalize_axis("topk", axis_arg, in.size());
    if (k_arg < 1 || static_cast<std::uint64_t>(k_arg) > in[axis]) {
        throw ShapeError(fmt::format("topk: k = {} is not in [1, {}] along axis {} of shape {}", k_arg, in[axis], axis, shape_str(in)));
    }
    const auto k = static_cast<std::size_t>(k_arg);
    const AxisSplit s(in, axis);
    std::vector<std::size_t> ranked = ranked_positions(a.value().data(), s, k, largest);
    Shape out = in;
    out[axis] = k;
    Indices indices = Indices::from_shape(out);
    for (std::size_t r = 0; r < ranked.size(); ++r) indices.data()[r] = static_cast<std::int64_t>(ranked[r]);
    return {gather_ranked("topk", a, s, k, std::move(ranked), out), std::move(indices)};
}

// y = exp(a - max) / sum(exp(a - max)) along axis;   da += y * (dy - sum(dy * y))
template <class T>
Var<T> softmax(const Var<T>& a, std::ptrdiff_t axis_arg) {
    const AxisSplit s(a.shape(), normalize_axis("softmax", axis_arg, a.dim()));
    Tensor<T> y = xt::exp(log_softmax_values(a.value(), s));
    return a.tape().record("softmax", std::move(y), {a}, [s](BackwardContext<T>& c) {
        T* dx = c.input_grad(0).data();
        const T* dy = c.output_grad().data();
        const T* out = c.output().data();
        for (std::size_t o = 0; o < s.outer; ++o) {
            for (std::size_t i = 0; i < s.inner; ++i) {
                T dot = 0;
                for (std::size_t k = 0; k < s.n; ++k) dot += dy[s.at(o, k, i)] * out[s.at(o, k, i)];
                for (std::size_t k = 0; k < s.n; ++k) dx[s.at(o, k, i)] += out[s.at(o, k, i)] * (dy[s.at(o, k, i)] - dot);
            }
        }
    }, Saves::output_only());
}

// y = a - max - log(sum(exp(a - max))) along axis;   da += dy - exp(y) * sum(dy)
template <class T>
Var<T> log_softmax(const Var<T>& a, std::ptrdiff_t axis_arg) {
    const AxisSplit s(a.shape(), normalize_axis("log_softmax", axis_arg, a.dim()));
    Tensor<T> y = log_softmax_values(a.value(), s);
    return a.tape().record("log_softmax", std::move(y), {a}, [s](BackwardContext<T>& c) {
        T* dx = c.input_grad(0).data();
        const T* dy = c.output_grad().data();
        const T* out = c.output().data();
        for (std::size_t o = 0; o < s.outer; ++o) {
            for (std::size_t i = 0; i < s.inner; ++i) {
                T total = 0;
                for (std::size_t k = 0; k < s.n; ++k) total += dy[s.at(o, k, i)];
                for (std::size_t k = 0; k < s.n; ++k) dx[s.at(o, k, i)] += dy[s.at(o, k, i)] - std::exp(out[s.at(o, k, i)]) * total;
            }
        }
    }, Saves::output_only());
}

#define OPS_REDUCE_INSTANCES(T)                                                           \
    template Var<T> sum(const Var<T>&);                                                \
    template Var<T> sum(const Var<T>&, const std::vector<std::ptrdiff_t>&, bool);      \
    template Var<T> mean(const Var<T>&);                                               \
    template Var<T> mean(const Var<T>&, const std::vector<std::ptrdiff_t>&, bool);     \
    template Var<T> max(const Var<T>&, std::ptrdiff_t, bool);                                                    \
    template Indices argmax(const Var<T>&, std::ptrdiff_t, bool);                                                \
    template TopK<T> topk(const Var<T>&, std::int64_t, std::ptrdiff_t, bool);                          \
    template Var<T> softmax(const Var<T>&, std::ptrdiff_t);                            \
    template Var<T> log_softmax(const Var<T>&, std::ptrdiff_t);
XGRAD_FOR_FLOAT_AND_DOUBLE(OPS_REDUCE_INSTANCES)

}  // namespace xgrad
