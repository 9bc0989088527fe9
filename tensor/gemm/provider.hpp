/// @file
/// The GEMM seam: every library or kernel that multiplies matrices for xgrad is a Provider, in a file
/// of its own beside this one (openblas.cpp, onednn_sgemm.cpp, onednn_blocked.cpp, panels.cpp, small_rows.cpp).
/// Which one runs a product is decided by timing them on the machine (choice.cpp), never by a
/// build-time switch. Internal to xgrad: users call xgrad::gemm, matmul or PrepackedGemm
/// (tensor/linalg.hpp).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace xgrad::blas {

/// C(m, n) = alpha · op(A) op(B) + beta · C, all row-major, rows lda, ldb and ldc apart; op(X) = Xᵀ
/// when trans_x. The sizes are what the pointers hold; nothing is checked.
template <class T>
struct Product {
    bool trans_a = false, trans_b = false;
    std::size_t m = 0, n = 0, k = 0;
    T alpha = T(1);
    const T* a = nullptr;
    std::size_t lda = 0;
    const T* b = nullptr;
    std::size_t ldb = 0;
    T beta = T(0);
    T* c = nullptr;
    std::size_t ldc = 0;
};

/// Many products C(m, n) = A(m, k) · op(B) (+ C) against one B laid out once.
template <class T>
class Packed {
  public:
    virtual ~Packed() = default;
    /// A's rows lda apart and C's ldc apart, as given to Provider::pack.
    virtual void run(const T* a, T* c, bool accumulate) const = 0;
};

/// The shape of products a choice is made for: plain products (gemm_raw) or products against a B
/// laid out once (PrepackedGemm, where trans_a is false).
struct Shape {
    std::size_t m = 0, n = 0, k = 0;
    bool trans_a = false, trans_b = false, packed = false;
};

/// One way to multiply. A provider runs on the calling thread and, when it sets_threads, on as many
/// OpenMP threads as it is given (1: the calling thread alone).
template <class T>
class Provider {
  public:
    virtual ~Provider() = default;
    /// Short and stable, to pin it by (XGRAD_GEMM_PROVIDER, xgrad::set_gemm_provider): "openblas".
    virtual std::string_view name() const = 0;
    /// With its version or kernels, for people: "OpenBLAS 0.3.21 (Zen kernels)".
    virtual std::string description() const = 0;
    /// Whether it can run products of this shape at all.
    virtual bool runs(const Shape& shape) const = 0;
    /// Whether a thread count given to it is honoured (else it picks its own).
    virtual bool sets_threads() const { return false; }
    /// Runs one plain product (shape.packed false).
    virtual void multiply(const Product<T>& product, int threads) const = 0;
    /// Lays B out for products of m rows (shape.packed true). By default: op(B) copied once as a plain
    /// (k, n) matrix, rows padded to whole 64-byte lines, then multiply() with B untransposed (a small-m
    /// GEMM runs C = A·B 20-30% faster than C = A·Bᵀ, whose Bᵀ it re-packs on each call).
    virtual std::unique_ptr<Packed<T>> pack(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b,
                                            std::size_t lda, std::size_t ldc, int threads) const;
};

/// op(B) as a row-major (k, n) matrix with rows ldb apart, ldb n rounded up to whole 64-byte lines and
/// the padding zero: the layout the default pack() and the small-rows kernel read.
template <class T>
struct PlainLayout {
    std::size_t k = 0, n = 0, ldb = 0;
    std::unique_ptr<T[]> values;
    PlainLayout(std::size_t n, std::size_t k, const T* b, bool trans_b);
};

/// OpenMP's thread count for the scope of one call, then back (a no-op when it already is that).
class ScopedThreads {
  public:
    explicit ScopedThreads(int threads);
    ~ScopedThreads();
    ScopedThreads(const ScopedThreads&) = delete;
    ScopedThreads& operator=(const ScopedThreads&) = delete;

  private:
    int before_;
};

// The providers built in. Each is defined in its own file; one built without its library (oneDNN
// is optional) returns nullptr.
template <class T>
const Provider<T>* openblas();
template <class T>
const Provider<T>* small_rows();
template <class T>
const Provider<T>* panels();
const Provider<float>* onednn_sgemm();
const Provider<float>* onednn_blocked();

}  // namespace xgrad::blas
