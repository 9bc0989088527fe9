// Elementwise ops. Binary ops broadcast like numpy; BackwardContext::accumulate sums each
// gradient back to its input's shape.
#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "../tensor/simd.hpp"
#include "ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad {

namespace {
template <class T>
void check_broadcast(std::string_view op, const Var<T>& a, const Var<T>& b) {
    broadcast_shapes(op, a.shape(), b.shape());
}

// Operands of one shape, the common case, take one vectorized pass (and the broadcasts that
// map_broadcast knows, one per row). (At a recurrent step's sizes, evaluating a small xtensor
// expression costs about as much as its arithmetic, measured on the graph-path LSTM step in
// commit e7bb649.)
template <class T, class F>
Tensor<T> map_values(const Tensor<T>& a, F f) {
    Tensor<T> y = Tensor<T>::from_shape(a.shape());
    const T* x = a.data();
    T* out = y.data();
    simd::simd_for<T>(a.size(), [&](auto lane, std::size_t j) { simd::store(out + j, f(simd::load<decltype(lane)>(x + j))); });
    return y;
}

template <class T, class F>
Tensor<T> map_values(const Tensor<T>& a, const Tensor<T>& b, F f) {
    Tensor<T> y = Tensor<T>::from_shape(a.shape());
    const T *x = a.data(), *z = b.data();
    T* out = y.data();
    simd::simd_for<T>(a.size(), [&](auto lane, std::size_t j) {
        using V = decltype(lane);
        simd::store(out + j, f(simd::load<V>(x + j), simd::load<V>(z + j)));
    });
    return y;
}

// How one operand of a broadcasting op covers the output, seen as rows x cols: all of it, one row
// repeated in every row (a bias), or one value per row (a (B, 1) column), for a split of the
// output's dimensions into rows (the first `split`) and cols (the rest).
enum class Cover { all, row, column };

struct Coverage {
    Cover cover;
    std::size_t split;
};

std::optional<Coverage> coverage(const Shape& operand, const Shape& out) {
    if (operand.size() > out.size()) return std::nullopt;
    Shape padded(out.size() - operand.size(), 1);
    padded.insert(padded.end(), operand.begin(), operand.end());
    if (padded == out) return Coverage{Cover::all, 0};
    // A single value (any shape of ones): one row of the whole output, a value broadcast in every lane.
    if (std::all_of(padded.begin(), padded.end(), [](std::size_t d) { return d == 1; })) return Coverage{Cover::column, 0};
    const auto ones = [&](std::size_t from, std::size_t to) {
        return std::all_of(padded.begin() + static_cast<std::ptrdiff_t>(from), padded.begin() + static_cast<std::ptrdiff_t>(to),
                           [](std::size_t d) { return d == 1; });
    };
    const auto same = [&](std::size_t from, std::size_t to) {
        return std::equal(padded.begin() + static_cast<std::ptrdiff_t>(from), padded.begin() + static_cast<std::ptrdiff_t>(to),
                          out.begin() + static_cast<std::ptrdiff_t>(from));
    };
    for (std::size_t k = 0; k <= out.size(); ++k) {
        if (ones(0, k) && same(k, out.size())) return Coverage{Cover::row, k};
    }
    for (std::size_t k = out.size() + 1; k-- > 0;) {
        if (same(0, k) && ones(k, out.size())) return Coverage{Cover::column, k};
    }
    return std::nullopt;
}

// f applied elementwise with numpy broadcasting: one vectorized pass per row when one operand has
// the output's shape and the other is a row repeated or a value per row (a bias, a (B, 1) mask: the
// graph path's broadcasts); any other broadcast (both operands stretched) one value at a time.
template <class T, class F>
Tensor<T> map_broadcast(const Tensor<T>& a, const Tensor<T>& b, F f) {
    if (a.shape() == b.shape()) return map_values(a, b, f);
    const Shape out = broadcast_shapes("broadcast", shape_of(a), shape_of(b));
    const auto ca = coverage(shape_of(a), out), cb = coverage(shape_of(b), out);
    if (!ca || !cb || (ca->cover != Cover::all && cb->cover != Cover::all)) {
        Tensor<T> y = Tensor<T>::from_shape(out);
        if (y.size() == 0) return y;  // xtensor 0.24's iterators do arithmetic on null over nothing
        const auto a_wide = xt::broadcast(a, out), b_wide = xt::broadcast(b, out);
        std::transform(a_wide.begin(), a_wide.end(), b_wide.begin(), y.begin(), [&](T x, T z) { return f(x, z); });
        return y;
    }
    const std::size_t split = ca->cover == Cover::all ? cb->split : ca->split;
    const std::size_t rows = numel(Shape(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(split)));
    const std::size_t cols = numel(Shape(out.begin() + static_cast<std::ptrdiff_t>(split), out.end()));
    Tensor<T> y = Tensor<T>::from_shape(out);
    T* dst = y.data();
    for (std::size_t r = 0; r < rows; ++r) {
        const auto read = [&](auto lane, const Tensor<T>& x, Cover c, std::size_t j) {
            using V = decltype(lane);
            switch (c) {
                case Cover::all: return simd::load<V>(x.data() + r * cols + j);
                case Cover::row: return simd::load<V>(x.data() + j);
                case Cover::column: break;
            }
            return V(x.data()[r]);
        };
        simd::simd_for<T>(cols, [&](auto lane, std::size_t j) {
            simd::store(dst + r * cols + j, f(read(lane, a, ca->cover, j), read(lane, b, cb->cover, j)));
        });
    }
    return y;
}

// Input i's gradient += term(lane, j) at every element j, in place, where input i has the output's
// shape (a new gradient buffer is written, not cleared and added to).
template <class T, class Term>
void accumulate_each(BackwardContext<T>& c, std::size_t i, Term term) {
    bool fresh = false;
    T* d = c.input_grad(i, &fresh).data();
    const std::size_t n = c.output_grad().size();
    if (fresh) {
        simd::simd_for<T>(n, [&](auto lane, std::size_t j) { simd::store(d + j, term(lane, j)); });
    } else {
        simd::simd_for<T>(n, [&](auto lane, std::size_t j) { simd::store(d + j, simd::load<decltype(lane)>(d + j) + term(lane, j)); });
    }
}

// The gradient dy, times `sign`, into input i: in one pass when it has the output's shape.
template <class T>
void accumulate_signed(BackwardContext<T>& c, std::size_t i, T sign) {
    if (!c.input_has_output_shape(i)) {
        c.accumulate(i, sign == T(1) ? Tensor<T>(c.output_grad()) : Tensor<T>(-c.output_grad()));
        return;
    }
    const T* dy = c.output_grad().data();
    accumulate_each(c, i, [&](auto lane, std::size_t j) { return simd::load<decltype(lane)>(dy + j) * sign; });
}

// dy ⊙ other into input i, other being the other factor of a product.
template <class T>
void accumulate_product(BackwardContext<T>& c, std::size_t i, const Tensor<T>& other) {
    if (!c.input_has_output_shape(i) || other.size() != c.output_grad().size()) {
        c.accumulate(i, c.output_grad() * other);
        return;
    }
    const T *dy = c.output_grad().data(), *o = other.data();
    accumulate_each(c, i, [&](auto lane, std::size_t j) {
        using V = decltype(lane);
        return simd::load<V>(dy + j) * simd::load<V>(o + j);
    });
}
}  // namespace

// y = a + b;   da += dy,  db += dy
template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
    check_broadcast("add", a, b);
    Tensor<T> y = map_broadcast(a.value(), b.value(), [](auto x, auto z) { return x + z; });
    return a.tape().record("add", std::move(y), {a, b}, [](BackwardContext<T>& c) {
        if (c.needs_grad(0)) accumulate_signed(c, 0, T(1));
        if (c.needs_grad(1)) accumulate_signed(c, 1, T(1));
    }, Saves::nothing());
}

// y = a - b;   da += dy,  db -= dy
template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
    check_broadcast("sub", a, b);
    Tensor<T> y = map_broadcast(a.value(), b.value(), [](auto x, auto z) { return x - z; });
    return a.tape().record("sub", std::move(y), {a, b}, [](BackwardContext<T>& c) {
        if (c.needs_grad(0)) accumulate_signed(c, 0, T(1));
        if (c.needs_grad(1)) accumulate_signed(c, 1, T(-1));
    }, Saves::nothing());
}

// y = a * b;   da += dy * b,  db += dy * a
template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
    check_broadcast("mul", a, b);
    Tensor<T> y = map_broadcast(a.value(), b.value(), [](auto x, auto z) { return x * z; });
    return a.tape().record("mul", std::move(y), {a, b}, [](BackwardContext<T>& c) {
        if (c.needs_grad(0)) accumulate_product(c, 0, c.input(1));
        if (c.needs_grad(1)) accumulate_product(c, 1, c.input(0));
    }, Saves::input(1).when(a.requires_grad()) | Saves::input(0).when(b.requires_grad()));
}

// y = a / b;   da += dy / b,  db -= dy * y / b
template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
    check_broadcast("div", a, b);
    Tensor<T> y = map_broadcast(a.value(), b.value(), [](auto x, auto z) { return x / z; });
    return a.tape().record("div", std::move(y), {a, b}, [](BackwardContext<T>& c) {
        if (c.needs_grad(0)) c.accumulate(0, c.output_grad() / c.input(1));
        if (c.needs_grad(1)) c.accumulate(1, -c.output_grad() * c.output() / c.input(1));
    }, Saves::input(1) | Saves::output_only());
}

// y = a + s;   da += dy
template <class T>
Var<T> add(const Var<T>& a, Scalar<T> s) {
    Tensor<T> y = map_values(a.value(), [s](auto x) { return x + decltype(x)(T(s)); });
    return a.tape().record("add", std::move(y), {a}, [](BackwardContext<T>& c) { c.accumulate(0, c.output_grad()); }, Saves::nothing());
}

// y = a * s;   da += dy * s
template <class T>
Var<T> mul(const Var<T>& a, Scalar<T> s) {
    Tensor<T> y = map_values(a.value(), [s](auto x) { return x * decltype(x)(T(s)); });
    return a.tape().record("mul", std::move(y), {a}, [s](BackwardContext<T>& c) { c.accumulate(0, c.output_grad() * s); }, Saves::nothing());
}

// y = s - a;   da -= dy
template <class T>
Var<T> rsub(const Var<T>& a, Scalar<T> s) {
    Tensor<T> y = s - a.value();
    return a.tape().record("rsub", std::move(y), {a}, [](BackwardContext<T>& c) { c.accumulate(0, -c.output_grad()); }, Saves::nothing());
}

// y = s / a;   da -= dy * y / a
template <class T>
Var<T> rdiv(const Var<T>& a, Scalar<T> s) {
    Tensor<T> y = s / a.value();
    return a.tape().record("rdiv", std::move(y), {a}, [](BackwardContext<T>& c) {
        c.accumulate(0, -c.output_grad() * c.output() / c.input(0));
    }, Saves::input(0) | Saves::output_only());
}

// y = -a;   da -= dy
template <class T>
Var<T> neg(const Var<T>& a) {
    Tensor<T> y = -a.value();
    return a.tape().record("neg", std::move(y), {a}, [](BackwardContext<T>& c) { c.accumulate(0, -c.output_grad()); }, Saves::nothing());
}

// y = exp(a);   da += dy * y
template <class T>
Var<T> exp(const Var<T>& a) {
    Tensor<T> y = xt::exp(a.value());
    return a.tape().record("exp", std::move(y), {a}, [](BackwardContext<T>& c) {
        c.accumulate(0, c.output_grad() * c.output());
    }, Saves::output_only());
}

// y = log(a);   da += dy / a
template <class T>
Var<T> log(const Var<T>& a) {
    Tensor<T> y = xt::log(a.value());
    return a.tape().record("log", std::move(y), {a}, [](BackwardContext<T>& c) {
        c.accumulate(0, c.output_grad() / c.input(0));
    }, Saves::input(0));
}

// y = a^p;   da += dy * p * a^(p-1)   (0 for p = 0, where 0 * 0^-1 would be NaN)
template <class T>
Var<T> pow(const Var<T>& a, Scalar<T> p) {
    Tensor<T> y = xt::pow(a.value(), p);
    return a.tape().record("pow", std::move(y), {a}, [p](BackwardContext<T>& c) {
        if (p == T(0)) return;
        c.accumulate(0, c.output_grad() * p * xt::pow(c.input(0), p - T(1)));
    }, Saves::input(0));
}

// y = a^b;   da += dy * b * a^(b-1),  db += dy * y * log(a)   (da = 0 where b = 0; db = 0 where a = 0 and b >= 0)
template <class T>
Var<T> pow(const Var<T>& a, const Var<T>& b) {
    check_broadcast("pow", a, b);
    Tensor<T> y = xt::pow(a.value(), b.value());
    return a.tape().record("pow", std::move(y), {a, b}, [](BackwardContext<T>& c) {
        if (c.needs_grad(0)) {
            c.accumulate(0, xt::where(xt::equal(c.input(1), T(0)), T(0),
                                      c.output_grad() * c.input(1) * xt::pow(c.input(0), c.input(1) - T(1))));
        }
        if (c.needs_grad(1)) {
            c.accumulate(1, xt::where(xt::equal(c.input(0), T(0)) && c.input(1) >= T(0), T(0),
                                      c.output_grad() * c.output() * xt::log(c.input(0))));
        }
    }, Saves::everything());
}

// y = sqrt(a);   da += dy / (2 y)
template <class T>
Var<T> sqrt(const Var<T>& a) {
    Tensor<T> y = xt::sqrt(a.value());
    return a.tape().record("sqrt", std::move(y), {a}, [](BackwardContext<T>& c) {
        c.accumulate(0, c.output_grad() / (T(2) * c.output()));
    }, Saves::output_only());
}

// y = |a|;   da += dy * sign(a)
template <class T>
Var<T> abs(const Var<T>& a) {
    Tensor<T> y = xt::abs(a.value());
    return a.tape().record("abs", std::move(y), {a}, [](BackwardContext<T>& c) {
        c.accumulate(0, c.output_grad() * xt::sign(c.input(0)));
    }, Saves::input(0));
}

// y = tanh(a);   da += dy * (1 - y^2)
template <class T>
Var<T> tanh(const Var<T>& a) {
    Tensor<T> y = map_values(a.value(), [](auto x) { return simd::tanh(x); });
    return a.tape().record("tanh", std::move(y), {a}, [](BackwardContext<T>& c) {
        const T *dy = c.output_grad().data(), *out = c.output().data();
        accumulate_each(c, 0, [&](auto lane, std::size_t j) {
            using V = decltype(lane);
            const V y = simd::load<V>(out + j);
            return simd::load<V>(dy + j) * (V(1) - y * y);
        });
    }, Saves::output_only());
}

// y = 1 / (1 + exp(-a));   da += dy * y * (1 - y)
// (exp(-a) overflows to inf for very negative a, giving exactly 0, never NaN.)
template <class T>
Var<T> sigmoid(const Var<T>& a) {
    Tensor<T> y = map_values(a.value(), [](auto x) { return simd::sigmoid(x); });
    return a.tape().record("sigmoid", std::move(y), {a}, [](BackwardContext<T>& c) {
        const T *dy = c.output_grad().data(), *out = c.output().data();
        accumulate_each(c, 0, [&](auto lane, std::size_t j) {
            using V = decltype(lane);
            const V y = simd::load<V>(out + j);
            return simd::load<V>(dy + j) * y * (V(1) - y);
        });
    }, Saves::output_only());
}

// y = max(a, 0);   da += dy * [y > 0]   (y > 0 exactly where a > 0)
template <class T>
Var<T> relu(const Var<T>& a) {
    Tensor<T> y = xt::maximum(a.value(), T(0));
    return a.tape().record("relu", std::move(y), {a}, [](BackwardContext<T>& c) {
        c.accumulate(0, xt::where(c.output() > T(0), c.output_grad(), T(0)));
    }, Saves::output_only());
}

// y = min(max(a, lo), hi);   da += dy * [lo <= a <= hi]
template <class T>
Var<T> clamp(const Var<T>& a, Scalar<T> lo, Scalar<T> hi) {
    if (!(lo <= hi)) throw std::invalid_argument(fmt::format("clamp: lo ({}) must not exceed hi ({})", lo, hi));
    Tensor<T> y = xt::clip(a.value(), lo, hi);
    return a.tape().record("clamp", std::move(y), {a}, [lo, hi](BackwardContext<T>& c) {
        c.accumulate(0, xt::where(c.input(0) >= lo && c.input(0) <= hi, c.output_grad(), T(0)));
    }, Saves::input(0));
}

// y = mask ? a : b;   da += dy * mask,  db += dy * !mask
template <class T>
Var<T> where(const Mask& mask, const Var<T>& a, const Var<T>& b) {
    broadcast_shapes("where", broadcast_shapes("where", shape_of(mask), a.shape()), b.shape());
    Tensor<T> y = xt::where(mask, a.value(), b.value());
    return a.tape().record("where", std::move(y), {a, b}, [mask](BackwardContext<T>& c) {
        if (c.needs_grad(0)) c.accumulate(0, xt::where(mask, c.output_grad(), T(0)));
        if (c.needs_grad(1)) c.accumulate(1, xt::where(mask, T(0), c.output_grad()));
    }, Saves::nothing());
}

#define OPS_ELEMENTWISE_INSTANCES(T)                                                     \
    template Var<T> add(const Var<T>&, const Var<T>&);                           \
    template Var<T> sub(const Var<T>&, const Var<T>&);                           \
    template Var<T> mul(const Var<T>&, const Var<T>&);                           \
    template Var<T> div(const Var<T>&, const Var<T>&);                           \
    template Var<T> add(const Var<T>&, Scalar<T>);                               \
    template Var<T> mul(const Var<T>&, Scalar<T>);                               \
    template Var<T> rsub(const Var<T>&, Scalar<T>);                              \
    template Var<T> rdiv(const Var<T>&, Scalar<T>);                              \
    template Var<T> neg(const Var<T>&);                                          \
    template Var<T> exp(const Var<T>&);                                          \
    template Var<T> log(const Var<T>&);                                          \
    template Var<T> pow(const Var<T>&, Scalar<T>);                               \
    template Var<T> pow(const Var<T>&, const Var<T>&);                           \
    template Var<T> sqrt(const Var<T>&);                                         \
    template Var<T> abs(const Var<T>&);                                          \
    template Var<T> tanh(const Var<T>&);                                         \
    template Var<T> sigmoid(const Var<T>&);                                      \
    template Var<T> relu(const Var<T>&);                                         \
    template Var<T> clamp(const Var<T>&, Scalar<T>, Scalar<T>);                  \
    template Var<T> where(const Mask&, const Var<T>&, const Var<T>&);
XGRAD_FOR_FLOAT_AND_DOUBLE(OPS_ELEMENTWISE_INSTANCES)

}  // namespace xgrad
