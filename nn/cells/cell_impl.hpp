// What the built-in cells' .cpp files share: activations over n contiguous values in place, a SIMD
// batch at a time, for the fused rows (scalar libm calls would cost the kernel as much as its
// GEMMs), and the instantiation of a cell for float and double.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace xgrad::nn::rows {

// Calls body(lane, j) for j = 0, ..., n - 1: a SIMD batch at a time (lane is an xsimd::batch<T>),
// then the tail one value at a time (lane is a T). One generic lambda written with the load, store
// and activations below serves both, so a cell's row is one vectorized pass over its gates (GCC does
// not vectorize such loops by itself: too many pointers that might alias). Call them qualified
// (rows::store): an unqualified store finds xsimd::store by argument-dependent lookup, which needs
// aligned memory.
template <class T, class Body>
void simd_for(std::size_t n, Body&& body) {
    using batch = xsimd::batch<T>;
    std::size_t j = 0;
    for (; j + batch::size <= n; j += batch::size) body(batch(T(0)), j);
    for (; j < n; ++j) body(T(0), j);
}

template <class V, class T>
V load(const T* p) {
    if constexpr (std::is_same_v<V, T>) {
        return *p;
    } else {
        return V::load_unaligned(p);
    }
}

template <class T, class V>
void store(T* p, const V& v) {
    if constexpr (std::is_same_v<V, T>) {
        *p = v;
    } else {
        v.store_unaligned(p);
    }
}

template <class V>
V tanh(const V& x) {
    using std::tanh;  // xsimd::tanh for batches, by argument-dependent lookup
    return tanh(x);
}

template <class V>
V sigmoid(const V& x) {
    using std::exp;
    return V(1) / (V(1) + exp(-x));
}

template <class T>
void tanh_inplace(T* x, std::size_t n) {
    simd_for<T>(n, [&](auto lane, std::size_t j) { rows::store(x + j, rows::tanh(rows::load<decltype(lane)>(x + j))); });
}

}  // namespace xgrad::nn::rows

// At the end of a built-in cell's .cpp: its graph step and rows, compiled for float and double.
#define XGRAD_INSTANTIATE_CELL(Cell)                                                         \
    template std::vector<Var<float>> Cell::step<float>(const CellStep<float>&) const;       \
    template void Cell::forward_row<float>(const RowForward<float>&) const;                 \
    template void Cell::backward_row<float>(const RowBackward<float>&) const;               \
    template std::vector<Var<double>> Cell::step<double>(const CellStep<double>&) const;    \
    template void Cell::forward_row<double>(const RowForward<double>&) const;               \
    template void Cell::backward_row<double>(const RowBackward<double>&) const;
