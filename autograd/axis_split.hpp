/// @file
/// Internal to the ops: a row-major tensor seen as (outer, n, inner) around one axis, so that
/// per-axis loops and block copies run on raw memory instead of strided views. Everything here is
/// in xgrad::detail, outside the API reference.
#pragma once

#include <cstddef>

#include "../tensor/tensor.hpp"

namespace xgrad::detail {

struct AxisSplit {
    std::size_t outer = 1, n = 1, inner = 1;
    AxisSplit(const Shape& shape, std::size_t axis) {
        for (std::size_t d = 0; d < shape.size(); ++d) {
            if (d < axis) outer *= shape[d];
            if (d == axis) n = shape[d];
            if (d > axis) inner *= shape[d];
        }
    }
    std::size_t at(std::size_t o, std::size_t k, std::size_t i) const { return (o * n + k) * inner + i; }
};

// For every outer index, `len` entries along the axis starting at src_start (in a tensor with
// src_n entries along it) are copied (or added, with Add) to dst at dst_start (dst_n entries).
template <bool Add, class T>
void copy_along(const T* src, std::size_t src_n, std::size_t src_start, T* dst, std::size_t dst_n,
                std::size_t dst_start, std::size_t len, std::size_t outer, std::size_t inner) {
    const std::size_t block = len * inner;
    for (std::size_t o = 0; o < outer; ++o) {
        const T* s = src + (o * src_n + src_start) * inner;
        T* d = dst + (o * dst_n + dst_start) * inner;
        for (std::size_t j = 0; j < block; ++j) {
            if constexpr (Add) {
                d[j] += s[j];
            } else {
                d[j] = s[j];
            }
        }
    }
}

}  // namespace xgrad::detail
