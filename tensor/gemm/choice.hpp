/// @file
/// Which provider runs a product: timed on the machine, once per process and shape, the way cuDNN's
/// benchmark mode and oneDNN's own dispatch choose, unless a provider is pinned
/// (XGRAD_GEMM_PROVIDER, xgrad::set_gemm_provider). Internal to xgrad, behind tensor/linalg.hpp.
#pragma once

#include <memory>
#include <string>

#include "provider.hpp"

namespace xgrad::blas {

/// Who runs products of one shape, and on how many threads.
template <class T>
struct Choice {
    const Provider<T>* provider = nullptr;
    int threads = 1;
};

/// The choice for plain products of this shape (shape.packed false): made by timing the candidates
/// on scratch matrices the first time the shape is seen at the current thread count, then cached.
template <class T>
Choice<T> choose(const Shape& shape);

/// B laid out by the provider chosen for products against it (shape.packed true, trans_a false).
template <class T>
std::unique_ptr<Packed<T>> pack_chosen(const Shape& shape, const T* b, std::size_t lda, std::size_t ldc);

/// Whether a provider is pinned (XGRAD_GEMM_PROVIDER, set_gemm_provider).
bool provider_pinned();

}  // namespace xgrad::blas
