// Ops that move elements without changing them: their backward moves the gradient back.
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xmanipulation.hpp>

#include "../tensor/linalg.hpp"
#include "axis_split.hpp"
#include "ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad {

using detail::AxisSplit;
using detail::copy_along;

namespace {
template <class T>
void check_parts(std::string_view op, const std::vector<Var<T>>& parts) {
    if (parts.empty()) throw std::invalid_argument(fmt::format("{}: needs at least one tensor", op));
}

std::string shapes_str(const std::vector<Shape>& shapes) {
    std::vector<std::string> s;
    for (const Shape& shape : shapes) s.push_back(shape_str(shape));
    return fmt::format("{}", fmt::join(s, ", "));
}

// x with its axes reordered by dims. A matrix transpose goes through the blocked transpose_raw:
// xtensor's strided assignment took ~10x as long (the graph path transposes W_ih every forward).
template <class T>
Tensor<T> permuted(const Tensor<T>& x, const std::vector<std::size_t>& dims) {
    if (dims.size() == 2 && dims[0] == 1) {
        Tensor<T> y = Tensor<T>::from_shape({x.shape(1), x.shape(0)});
        transpose_raw(x.shape(0), x.shape(1), x.data(), y.data(), x.shape(0));
        return y;
    }
    return xt::transpose(x, dims);
}
}  // namespace

// y = a with axes reordered by dims;   da += dy with the inverse order
template <class T>
Var<T> permute(const Var<T>& a, const std::vector<std::size_t>& dims) {
    std::vector<std::size_t> sorted = dims;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::size_t> identity(a.dim());
    std::iota(identity.begin(), identity.end(), 0);
    if (sorted != identity) {
        throw ShapeError(fmt::format("permute: dims [{}] are not a permutation of the axes of shape {}",
                                     fmt::join(dims, ", "), shape_str(a.shape())));
    }
    std::vector<std::size_t> inverse(dims.size());
    for (std::size_t i = 0; i < dims.size(); ++i) inverse[dims[i]] = i;
    return a.tape().record("permute", permuted(a.value(), dims), {a}, [inverse](BackwardContext<T>& c) {
        c.accumulate(0, permuted(c.output_grad(), inverse));
    }, Saves::nothing());
}

// y = a with dim0 and dim1 swapped;   da += dy with them swapped back
template <class T>
Var<T> transpose(const Var<T>& a, std::ptrdiff_t dim0, std::ptrdiff_t dim1) {
    std::vector<std::size_t> dims(a.dim());
    std::iota(dims.begin(), dims.end(), 0);
    std::swap(dims[normalize_axis("transpose", dim0, a.dim())], dims[normalize_axis("transpose", dim1, a.dim())]);
    return permute(a, dims);
}

// y = a viewed with a new shape (same elements, row-major);   da += dy reshaped back
template <class T>
Var<T> reshape(const Var<T>& a, const std::vector<std::ptrdiff_t>& shape) {
    auto fail = [&] {
        return ShapeError(fmt::format("reshape: cannot reshape {} ({} elements) to [{}]", shape_str(a.shape()),
                                      a.numel(), fmt::join(shape, ", ")));
    };
    Shape out(shape.size(), 1);  // the inferred dimension counts as 1 until it is known
    std::ptrdiff_t inferred = -1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1 && inferred < 0) {
            inferred = static_cast<std::ptrdiff_t>(i);
        } else if (shape[i] < 0) {
            throw fail();
        } else {
            out[i] = static_cast<std::size_t>(shape[i]);
        }
    }
    const std::optional<std::size_t> counted = checked_numel(out);
    if (!counted) throw fail();  // xtensor's strides would overflow
    const std::size_t known = *counted;
    if (inferred >= 0) {
        if (known == 0 || a.numel() % known != 0) throw fail();
        out[static_cast<std::size_t>(inferred)] = a.numel() / known;
    } else if (known != a.numel()) {
        throw fail();
    }
    Tensor<T> y = a.value();
    y.reshape(out);
    return a.tape().record("reshape", std::move(y), {a}, [](BackwardContext<T>& c) {
        Tensor<T> g = c.output_grad();
        g.reshape(c.input_shape(0));
        c.accumulate(0, std::move(g));
    }, Saves::nothing());
}

// y = [a_0, a_1, ...] joined along axis;   da_i += the matching slice of dy
template <class T>
Var<T> concat(const std::vector<Var<T>>& parts, std::ptrdiff_t axis_arg) {
    check_parts("concat", parts);
    const Shape first = parts[0].shape();
    if (first.empty()) throw ShapeError("concat: cannot concatenate 0-d tensors (use stack)");
    const std::size_t axis = normalize_axis("concat", axis_arg, first.size());
    std::vector<Shape> shapes;
    Shape out = first;
    out[axis] = 0;
    for (const Var<T>& p : parts) shapes.push_back(p.shape());
    std::vector<std::size_t> starts;
    for (const Shape& s : shapes) {
        bool compatible = s.size() == first.size();
        for (std::size_t d = 0; compatible && d < s.size(); ++d) compatible = d == axis || s[d] == first[d];
        if (!compatible) {
            throw ShapeError(fmt::format("concat: shapes {} do not match outside axis {}", shapes_str(shapes), axis));
        }
        starts.push_back(out[axis]);
        out[axis] += s[axis];
    }
    const AxisSplit o(out, axis);
    Tensor<T> y = Tensor<T>::from_shape(out);
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::size_t len = shapes[i][axis];
        copy_along<false>(parts[i].value().data(), len, 0, y.data(), o.n, starts[i], len, o.outer, o.inner);
    }
    std::vector<std::size_t> lengths;
    for (const Shape& s : shapes) lengths.push_back(s[axis]);
    return parts[0].tape().record("concat", std::move(y), std::span<const Var<T>>(parts), [o, starts, lengths](BackwardContext<T>& c) {
        for (std::size_t i = 0; i < c.num_inputs(); ++i) {
            if (!c.needs_grad(i)) continue;
            const std::size_t len = lengths[i];
            copy_along<true>(c.output_grad().data(), o.n, starts[i], c.input_grad(i).data(), len, 0, len, o.outer,
                             o.inner);
        }
    }, Saves::nothing());
}

// y = [a_0, a_1, ...] stacked along a new axis;   da_i += dy's i-th slice along it
template <class T>
Var<T> stack(const std::vector<Var<T>>& parts, std::ptrdiff_t axis_arg) {
    check_parts("stack", parts);
    const Shape first = parts[0].shape();
    const std::size_t axis = normalize_axis("stack", axis_arg, first.size() + 1);
    std::vector<Shape> shapes;
    for (const Var<T>& p : parts) shapes.push_back(p.shape());
    for (const Shape& s : shapes) {
        if (s != first) throw ShapeError(fmt::format("stack: shapes {} are not all equal", shapes_str(shapes)));
    }
    Shape out = first;
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(axis), parts.size());
    const AxisSplit o(out, axis);
    Tensor<T> y = Tensor<T>::from_shape(out);
    for (std::size_t i = 0; i < parts.size(); ++i) {
        copy_along<false>(parts[i].value().data(), 1, 0, y.data(), o.n, i, 1, o.outer, o.inner);
    }
    return parts[0].tape().record("stack", std::move(y), std::span<const Var<T>>(parts), [o](BackwardContext<T>& c) {
        for (std::size_t i = 0; i < c.num_inputs(); ++i) {
            if (c.needs_grad(i)) {
                copy_along<true>(c.output_grad().data(), o.n, i, c.input_grad(i).data(), 1, 0, 1, o.outer, o.inner);
            }
        }
    }, Saves::nothing());
}

namespace {
// Elements [start, start + length) along axis, keeping the axis (narrow) or dropping it (select).
template <class T>
Var<T> slice_along(const char* op, const Var<T>& a, std::size_t axis, std::size_t start, std::size_t length,
                   bool keep_axis) {
    const Shape in = a.shape();
    const AxisSplit s(in, axis);
    Shape out = in;
    if (keep_axis) {
        out[axis] = length;
    } else {
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(axis));
    }
    Tensor<T> y = Tensor<T>::from_shape(out);
    copy_along<false>(a.value().data(), s.n, start, y.data(), length, 0, length, s.outer, s.inner);
    return a.tape().record(op, std::move(y), {a}, [s, start, length](BackwardContext<T>& c) {
        copy_along<true>(c.output_grad().data(), length, 0, c.input_grad(0).data(), s.n, start, length, s.outer,
                         s.inner);
    }, Saves::nothing());
}
}  // namespace

// y = a[..., start:start+length, ...] along axis;   da[..., start:start+length, ...] += dy
template <class T>
Var<T> narrow(const Var<T>& a, std::ptrdiff_t axis_arg, std::ptrdiff_t start_arg, std::size_t length) {
    const std::size_t axis = normalize_axis("narrow", axis_arg, a.dim());
    const std::size_t n = a.shape()[axis];
    const auto signed_n = static_cast<std::ptrdiff_t>(n);
    if (start_arg < -signed_n || start_arg > signed_n) {
        throw ShapeError(fmt::format("narrow: start {} is out of range along axis {} of shape {}", start_arg, axis,
                                     shape_str(a.shape())));
    }
    const auto start = static_cast<std::size_t>(start_arg < 0 ? start_arg + signed_n : start_arg);
    if (length > n - start) {
        throw ShapeError(fmt::format("narrow: elements [{}, {}) along axis {} are out of range for shape {}", start,
                                     start + length, axis, shape_str(a.shape())));
    }
    return slice_along("narrow", a, axis, start, length, true);
}

// y = a[..., index, ...] (axis removed);   da[..., index, ...] += dy
template <class T>
Var<T> select(const Var<T>& a, std::ptrdiff_t axis_arg, std::ptrdiff_t index_arg) {
    const std::size_t axis = normalize_axis("select", axis_arg, a.dim());
    const auto n = static_cast<std::ptrdiff_t>(a.shape()[axis]);
    if (index_arg < -n || index_arg >= n) {
        throw ShapeError(fmt::format("select: index {} is out of range along axis {} of shape {}", index_arg, axis,
                                     shape_str(a.shape())));
    }
    return slice_along("select", a, axis, static_cast<std::size_t>(index_arg < 0 ? index_arg + n : index_arg), 1, false);
}

template <class T>
std::vector<Var<T>> split(const Var<T>& a, const std::vector<std::size_t>& sizes, std::ptrdiff_t axis_arg) {
    const std::size_t axis = normalize_axis("split", axis_arg, a.dim());
    if (std::accumulate(sizes.begin(), sizes.end(), std::size_t{0}) != a.shape()[axis]) {
        throw ShapeError(fmt::format("split: sizes [{}] do not add up to {}, the length of axis {} of shape {}",
                                     fmt::join(sizes, ", "), a.shape()[axis], axis, shape_str(a.shape())));
    }
    std::vector<Var<T>> pieces;
    std::size_t start = 0;
    for (std::size_t size : sizes) {
        pieces.push_back(narrow(a, static_cast<std::ptrdiff_t>(axis), start, size));
        start += size;
    }
    return pieces;
}

template <class T>
std::vector<Var<T>> split(const Var<T>& a, std::size_t split_size, std::ptrdiff_t axis_arg) {
    const std::size_t axis = normalize_axis("split", axis_arg, a.dim());
    if (split_size == 0) throw std::invalid_argument("split: split_size must be positive");
    std::vector<std::size_t> sizes;
    for (std::size_t left = a.shape()[axis]; left > 0; left -= std::min(left, split_size)) {
        sizes.push_back(std::min(left, split_size));
    }
    return split(a, sizes, static_cast<std::ptrdiff_t>(axis));
}

#define OPS_SHAPE_INSTANCES(T)                                                                                 \
    template Var<T> permute(const Var<T>&, const std::vector<std::size_t>&);                                \
    template Var<T> transpose(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t);                               \
    template Var<T> reshape(const Var<T>&, const std::vector<std::ptrdiff_t>&);                             \
    template Var<T> concat(const std::vector<Var<T>>&, std::ptrdiff_t);                                     \
    template Var<T> stack(const std::vector<Var<T>>&, std::ptrdiff_t);                                      \
    template Var<T> narrow(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t, std::size_t);                     \
    template Var<T> select(const Var<T>&, std::ptrdiff_t, std::ptrdiff_t);                                  \
    template std::vector<Var<T>> split(const Var<T>&, const std::vector<std::size_t>&, std::ptrdiff_t);     \
    template std::vector<Var<T>> split(const Var<T>&, std::size_t, std::ptrdiff_t);
XGRAD_FOR_FLOAT_AND_DOUBLE(OPS_SHAPE_INSTANCES)

}  // namespace xgrad
