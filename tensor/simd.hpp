/// @file
/// Loops over contiguous values a SIMD batch at a time, for the hot elementwise work written by hand
/// (the fused cells' rows, the loss, the optimizers): one generic lambda serves the batches and the
/// scalar tail. Include it in .cpp files only: xsimd is heavy.
///
/// @code
///   simd::simd_for<float>(n, [&](auto lane, std::size_t j) {
///       using V = decltype(lane);
///       simd::store(y + j, simd::tanh(simd::load<V>(x + j)));
///   });
/// @endcode
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

// Kernels compiled once per instruction set (tensor/isa_kernels.hpp) get these functions in their
// own inline namespace: a function template instantiated alike in two copies would otherwise be one
// symbol, and the linker could keep the AVX-512 one for every caller.
#ifdef XGRAD_ISA_NAMESPACE
/// The inline namespace of this copy of the functions below.
#define XGRAD_SIMD_COPY XGRAD_ISA_NAMESPACE
#else
/// The inline namespace of this copy of the functions below.
#define XGRAD_SIMD_COPY isa_default
#endif

/// Elementwise loops a SIMD batch at a time over xsimd (tensor/simd.hpp), for the .cpp files of
/// cells' rows, losses and optimizers. Every function takes a batch or a plain value alike.
namespace xgrad::simd {
inline namespace XGRAD_SIMD_COPY {

/// Calls body(lane, j) for j = 0, ..., n - 1: a SIMD batch at a time (lane is an xsimd::batch<T>),
/// then the tail one value at a time (lane is a T). One generic lambda written with the load, store
/// and activations below serves both, so a cell's row is one vectorized pass over its gates (GCC does
/// not vectorize such loops by itself: too many pointers that might alias). Call them qualified
/// (simd::store): an unqualified store finds xsimd::store by argument-dependent lookup, which needs
/// aligned memory.
template <class T, class Body>
void simd_for(std::size_t n, Body&& body) {
    using batch = xsimd::batch<T>;
    std::size_t j = 0;
    for (; j + batch::size <= n; j += batch::size) body(batch(T(0)), j);
    for (; j < n; ++j) body(T(0), j);
}

/// The value or batch of type V at p (unaligned loads: p need not be aligned).
template <class V, class T>
V load(const T* p) {
    if constexpr (std::is_same_v<V, T>) {
        return *p;
    } else {
        return V::load_unaligned(p);
    }
}

/// Writes the value or batch v at p (unaligned stores).
template <class T, class V>
void store(T* p, const V& v) {
    if constexpr (std::is_same_v<V, T>) {
        *p = v;
    } else {
        v.store_unaligned(p);
    }
}

/// tanh of a value (std::tanh) or of a batch (xsimd::tanh).
template <class V>
V tanh(const V& x) {
    using std::tanh;  // xsimd::tanh for batches, by argument-dependent lookup
    return tanh(x);
}

/// 1 / (1 + e^-x), for a value or a batch.
template <class V>
V sigmoid(const V& x) {
    using std::exp;
    return V(1) / (V(1) + exp(-x));
}

/// Replaces x[0, n) with their tanh, vectorized.
template <class T>
void tanh_inplace(T* x, std::size_t n) {
    simd_for<T>(n, [&](auto lane, std::size_t j) { simd::store(x + j, simd::tanh(simd::load<decltype(lane)>(x + j))); });
}

/// Square root of a value or a batch.
template <class V>
V sqrt(const V& x) {
    using std::sqrt;
    return sqrt(x);
}

/// std::max's rule in every lane, a < b ? b : a (so a NaN in b leaves a, as the scalar code does).
template <class V>
V max(const V& a, const V& b) {
    if constexpr (std::is_arithmetic_v<V>) {
        return a < b ? b : a;
    } else {
        return xsimd::select(a < b, b, a);
    }
}

}  // namespace XGRAD_SIMD_COPY
}  // namespace xgrad::simd
