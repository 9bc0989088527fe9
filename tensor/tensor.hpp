/// @file
/// xgrad tensors: float and double n-d arrays over xtensor, and the shape helpers every layer uses.
///
/// @code
///   xgrad::Tensor<float> x = xt::zeros<float>({2, 3});
///   xgrad::shape_str(xgrad::shape_of(x));              // "(2, 3)"
///   xgrad::broadcast_shapes("add", {2, 3}, {3});       // {2, 3}
/// @endcode
///
/// Only `<xtensor/xarray.hpp>` is included here; math, views and BLAS stay in .cpp files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <xtensor/xarray.hpp>

#include "allocator.hpp"

namespace xgrad {

/// An n-d array of float or double: an xt::xarray, so every xtensor expression applies.
/// Row-major, 64-byte aligned storage from AlignedAllocator (allocator.hpp says why not xsimd's).
template <class T>
using Tensor = xt::xarray<T, xt::layout_type::row_major, AlignedAllocator<T>>;

/// Class or token indices (embedding rows, cross-entropy targets).
using Indices = xt::xarray<std::int64_t, xt::layout_type::row_major, AlignedAllocator<std::int64_t>>;

/// True where a value counts (a sequence's real steps, positions attention may look at); any
/// `xt::xarray<bool>` converts to it. Its allocator is named, as Tensor's and Indices' are, so that
/// the type is the same whatever xtensor settings (XTENSOR_USE_XSIMD) a user's code compiles with.
using Mask = xt::xarray<bool, xt::layout_type::row_major, AlignedAllocator<bool>>;

/// A tensor's dimensions, outermost first; empty for a 0-d (scalar) tensor.
using Shape = std::vector<std::size_t>;

/// Thrown when arguments have incompatible shapes; the message names the op and every shape.
class ShapeError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

/// The shape of any xtensor expression (a Tensor, Indices, a mask) as a Shape.
template <class A>
Shape shape_of(const A& a) {
    return Shape(a.shape().begin(), a.shape().end());
}

/// Element count of a shape, its running product overflow-checked left to right (so a shape whose
/// partial product overflows is refused even if a later 0 would make it empty): nothing on overflow.
std::optional<std::size_t> checked_numel(const Shape& shape);
/// The same, throwing ShapeError naming `op` and the shape on overflow.
std::size_t numel(const Shape& shape, std::string_view op = "numel");

/// a * b, or ShapeError naming `op` and `what` if the product does not fit a size_t.
std::size_t checked_mul(std::size_t a, std::size_t b, std::string_view op, std::string_view what);

/// "(2, 3)"; a scalar is "()".
std::string shape_str(const Shape& shape);

/// numpy broadcasting of two shapes; throws ShapeError naming `op` if they are incompatible.
Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b);

/// Python-style axis (negative counts from the end) checked against `rank`; throws naming `op`.
/// The axis in [0, rank); ShapeError when it is out of range.
std::size_t normalize_axis(std::string_view op, std::ptrdiff_t axis, std::size_t rank);

/// The flat index of the first NaN or infinite value of `t`, if any (safe on empty tensors, where
/// xtensor 0.24's iterators do arithmetic on null).
template <class T>
std::optional<std::size_t> first_non_finite(const Tensor<T>& t);

/// Sums `grad` down to `shape` (the inverse of broadcasting `shape` up to grad's shape).
template <class T>
Tensor<T> sum_to(const Tensor<T>& grad, const Shape& shape);

}  // namespace xgrad
