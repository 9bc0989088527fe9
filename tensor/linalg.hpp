/// @file
/// BLAS-backed linear algebra. `gemm` accumulates into an existing buffer (beta = 1 avoids an
/// allocation and an extra add); `matmul` allocates its result.
///
/// @code
///   xgrad::Tensor<float> c = xgrad::matmul(a, b);          // (m, k) x (k, n) -> (m, n)
///   xgrad::gemm(false, true, 1.0f, a, b, 1.0f, c);         // c += a * b^T
/// @endcode
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tensor.hpp"
#include "threads.hpp"  // set_blas_threads, with the GEMMs it sets the threads of

namespace xgrad {

/// Raw row-major GEMM: C(m,n) = alpha * op(A) op(B) + beta * C, with leading dimensions lda, ldb, ldc.
/// op(X) is Xᵀ when trans_x. Nothing is checked: the pointers must hold what the sizes say.
template <class T>
void gemm_raw(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
              std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

/// dst(cols, rows) = src(rows, cols)ᵀ, both row-major, src dense, dst's rows ld_dst ≥ rows apart.
template <class T>
void transpose_raw(std::size_t rows, std::size_t cols, const T* src, T* dst, std::size_t ld_dst);

/// Many products C(m, n) = A(m, k) · op(B) (+ C) against one B, as a recurrent layer multiplies every
/// step's h by W_hhᵀ. B is laid out once, at construction, for the provider chosen for the shape
/// (see set_gemm_provider): oneDNN's matmul keeps it in its blocked weights format, our kernel for a
/// few rows and the plain GEMMs as op(B), padded (a small-m GEMM runs C = A·B 20-30% faster than
/// C = A·Bᵀ, whose Bᵀ it re-packs on each call). B is copied: later changes to b are not seen. Not
/// for concurrent use from several threads; a moved-from object may only be destroyed or assigned to.
///
/// @code
///   xgrad::PrepackedGemm<float> step(batch, 4 * H, H, w_hh.data(), true, H, 4 * H);
///   for (...) step(h_prev, gates_t, true);   // gates_t += h_prev · W_hhᵀ
/// @endcode
template <class T>
class PrepackedGemm {
  public:
    /// op(B) is (k, n): B is (n, k) row-major when trans_b, else (k, n). A's rows are lda apart, C's ldc.
    /// Throws ShapeError unless lda >= k and ldc >= n.
    PrepackedGemm(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda,
                  std::size_t ldc);
    /// Takes over the layout; `other` may then only be destroyed or assigned to.
    ///@{
    PrepackedGemm(PrepackedGemm&&) noexcept;
    PrepackedGemm& operator=(PrepackedGemm&&) noexcept;
    ///@}
    /// Frees the laid-out copy of B.
    ~PrepackedGemm();

    /// C = A · op(B), or C += A · op(B) when accumulate.
    /// A is (m, k) with rows lda apart, C (m, n) with rows ldc apart, the sizes given at construction.
    void operator()(const T* a, T* c, bool accumulate) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// C = alpha * op(A) op(B) + beta * C on 2-D row-major tensors; C must already have the result shape.
/// Throws ShapeError naming the shapes otherwise.
template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, const Tensor<T>& a, const Tensor<T>& b, T beta, Tensor<T>& c);

/// Matrix product: (m,k)x(k,n) -> (m,n); batched (b,m,k)x(b,k,n) -> (b,m,n); and
/// (b,m,k)x(k,n) -> (b,m,n). Throws ShapeError naming "matmul" and both shapes otherwise.
template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b);

/// Which GEMM provider runs a product is chosen per shape by timing the candidates the first time
/// the shape is seen (a few ms per shape, once per process and thread count), as cuDNN's benchmark
/// mode does: oneDNN's sgemm on one thread or all, OpenBLAS, oneDNN's matmul on blocked weights and
/// our small-rows kernel (the last two for a B laid out once, PrepackedGemm). Timings closer than 5%
/// keep the earlier of these, yet two processes may still choose differently, and two providers
/// round differently: pin one by name for runs that must give the same bits every time. Pinned, it
/// runs every product it can on all threads and the first of the list above that can runs the
/// rest, nothing timed. The environment variable XGRAD_GEMM_PROVIDER pins one at start; "auto" (or
/// "") measures again. Throws std::invalid_argument naming the providers built in for a name that
/// is not one of them.
void set_gemm_provider(const std::string& name);

/// The providers this build has, by the names set_gemm_provider takes: "onednn", "openblas",
/// "onednn-blocked", "small-rows" (the oneDNN ones only when built with Debian's libdnnl-dev).
std::vector<std::string> gemm_providers();

/// What runs the GEMMs, for people: "chosen per shape by timing oneDNN 2.6.3 sgemm, OpenBLAS (Zen
/// kernels), ...", or the pinned provider.
std::string gemm_provider();

/// The choices made so far, one line per shape, with the times measured: "float 64 x 512 x 2048
/// A·Bᵀ laid out once at 2 threads: onednn/1 (onednn 0.41 ms, onednn/1 0.36 ms, ...)". "/1": on one thread.
std::string gemm_choices();

/// The choices made so far as one line that restore_gemm_choices reads back, so that a run resumed
/// in another process multiplies exactly as the first did (xgrad-charlm keeps it in checkpoints).
std::string saved_gemm_choices();

/// Takes back saved_gemm_choices' line: those shapes skip the timing. A choice this build or this
/// thread count cannot make is left to be measured again. Throws std::invalid_argument naming the
/// entry that is not one.
void restore_gemm_choices(const std::string& saved);

}  // namespace xgrad
