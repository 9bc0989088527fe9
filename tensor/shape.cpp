#include "tensor.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

namespace xgrad {

std::size_t checked_mul(std::size_t a, std::size_t b, std::string_view op, std::string_view what) {
    std::size_t product = 0;
    if (__builtin_mul_overflow(a, b, &product)) {
        throw ShapeError(fmt::format("{}: {} overflows ({} x {} does not fit in 64 bits)", op, what, a, b));
    }
    return product;
}

std::optional<std::size_t> checked_numel(const Shape& shape) {
    std::size_t n = 1;
    for (std::size_t d : shape) {
        if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
    }
    return n;
}

std::size_t numel(const Shape& shape, std::string_view op) {
    const std::optional<std::size_t> n = checked_numel(shape);
    if (!n) throw ShapeError(fmt::format("{}: shape {} has too many elements (the count overflows)", op, shape_str(shape)));
    return *n;
}

std::string shape_str(const Shape& shape) {
    if (shape.size() == 1) return fmt::format("({},)", shape[0]);
    return fmt::format("({})", fmt::join(shape, ", "));
}

Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b) {
    Shape out(std::max(a.size(), b.size()));
    for (std::size_t i = 0; i < out.size(); ++i) {
        // Align from the right, as numpy does.
        std::size_t da = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
        std::size_t db = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
        if (da != db && da != 1 && db != 1) {
            throw ShapeError(fmt::format("{}: shapes {} and {} cannot be broadcast together", op,
                                         shape_str(a), shape_str(b)));
        }
        out[i] = da == 1 ? db : da;
    }
    return out;
}

std::size_t normalize_axis(std::string_view op, std::ptrdiff_t axis, std::size_t rank) {
    auto r = static_cast<std::ptrdiff_t>(rank);
    if (axis < -r || axis >= r) {
        throw ShapeError(fmt::format("{}: axis {} is out of range for a tensor of rank {}", op, axis, rank));
    }
    return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

template <class T>
Tensor<T> sum_to(const Tensor<T>& grad, const Shape& shape) {
    Shape gshape = shape_of(grad);
    if (gshape == shape) return grad;
    std::size_t lead = gshape.size() - shape.size();
    std::vector<std::size_t> axes;
    for (std::size_t i = 0; i < gshape.size(); ++i) {
        if (i < lead || (shape[i - lead] == 1 && gshape[i] != 1)) axes.push_back(i);
    }
    if (grad.size() == 0) {  // xtensor's reducers do pointer arithmetic on null for empty input
        Tensor<T> zeros = Tensor<T>::from_shape(shape);
        zeros.fill(T(0));
        return zeros;
    }
    // Summing away leading axes only (a bias broadcast over rows) is a sum of rows: a flat loop,
    // where xtensor's reducer was a large share of the graph-path LSTM step (measured in commit 7aded0a).
    bool leading_only = true;
    for (std::size_t i = 0; i < axes.size(); ++i) leading_only = leading_only && axes[i] == i;
    if (leading_only) {
        Tensor<T> rows_sum = Tensor<T>::from_shape(shape);
        const std::size_t inner = rows_sum.size(), rows = grad.size() / inner;
        T* out = rows_sum.data();
        const T* in = grad.data();
        std::copy_n(in, inner, out);
        for (std::size_t r = 1; r < rows; ++r)
            for (std::size_t j = 0; j < inner; ++j) out[j] += in[r * inner + j];
        return rows_sum;
    }
    Tensor<T> reduced = xt::sum(grad, axes);
    reduced.reshape(shape);
    return reduced;
}

template <class T>
std::optional<std::size_t> first_non_finite(const Tensor<T>& t) {
    const T* data = t.data();
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (!std::isfinite(data[i])) return i;
    }
    return std::nullopt;
}

template std::optional<std::size_t> first_non_finite(const Tensor<float>&);
template std::optional<std::size_t> first_non_finite(const Tensor<double>&);
template Tensor<float> sum_to(const Tensor<float>&, const Shape&);
template Tensor<double> sum_to(const Tensor<double>&, const Shape&);

}  // namespace xgrad
