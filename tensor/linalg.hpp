// BLAS-backed linear algebra. `gemm` accumulates into an existing buffer (beta = 1 avoids an
// allocation and an extra add); `matmul` allocates its result.
//
//   xgrad::Tensor<float> c = xgrad::matmul(a, b);          // (m, k) x (k, n) -> (m, n)
//   xgrad::gemm(false, true, 1.0f, a, b, 1.0f, c);         // c += a * b^T
#pragma once

#include <string>

#include "tensor.hpp"

namespace xgrad {

// Raw row-major GEMM: C(m,n) = alpha * op(A) op(B) + beta * C, with leading dimensions lda, ldb, ldc.
template <class T>
void gemm_raw(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
              std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// dst(cols, rows) = src(rows, cols)ᵀ, both row-major and dense. For laying a weight out once for
// many GEMMs: the fp32 providers run a small-M product C = A·B 20-30% faster than C = A·Bᵀ
// (bench/bench_gemm.cpp measures both), because op(B) = Bᵀ is re-packed on every call.
template <class T>
void transpose_raw(std::size_t rows, std::size_t cols, const T* src, T* dst);

// C = alpha * op(A) op(B) + beta * C on 2-D row-major tensors; C must already have the result shape.
template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, const Tensor<T>& a, const Tensor<T>& b, T beta, Tensor<T>& c);

// Matrix product: (m,k)x(k,n) -> (m,n); batched (b,m,k)x(b,k,n) -> (b,m,n); and
// (b,m,k)x(k,n) -> (b,m,n). Throws ShapeError naming "matmul" and both shapes otherwise.
template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b);

// The GEMMs' worker threads (OpenBLAS honours OPENBLAS_NUM_THREADS at start-up, oneDNN
// OMP_NUM_THREADS; this changes both later).
void set_blas_threads(int threads);
int blas_threads();

// What runs the GEMMs, e.g. "oneDNN 2.6.3 sgemm (float), OpenBLAS (Haswell kernels) (double)":
// chosen at build time with the CMake option XGRAD_GEMM (auto, onednn, openblas).
std::string gemm_provider();

}  // namespace xgrad
