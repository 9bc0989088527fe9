// The GEMM entry points: shapes checked here, products run by the provider chosen for their shape
// (gemm/choice.cpp). Only OpenBLAS's thread count is set directly.
#include "linalg.hpp"

#include <algorithm>

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include "gemm/choice.hpp"

namespace xgrad {

namespace {
// BLAS rejects a zero inner dimension (lda would be 0); the product is then just beta * C.
template <class T>
bool scale_only(std::size_t m, std::size_t n, std::size_t k, T beta, T* c, std::size_t ldc) {
    if (m == 0 || n == 0) return true;
    if (k != 0) return false;
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return true;
}
}  // namespace

template <class T>
void gemm_raw(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda, const T* b,
              std::size_t ldb, T beta, T* c, std::size_t ldc) {
    if (scale_only(m, n, k, beta, c, ldc)) return;
    const blas::Choice<T> chosen = blas::choose<T>(blas::Shape{m, n, k, ta, tb, false});
    chosen.provider->multiply(blas::Product<T>{ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}, chosen.threads);
}

template <class T>
void transpose_raw(std::size_t rows, std::size_t cols, const T* src, T* dst, std::size_t ld_dst) {
    // Tiles that stay in L1, each written a contiguous run at a time: writing down a column of dst
    // instead strides by `rows`, often a multiple of 4 KiB, which aliases in the cache (measured
    // several times slower in commit c11f336).
    constexpr std::size_t tile = 16;
    for (std::size_t r0 = 0; r0 < rows; r0 += tile)
        for (std::size_t c0 = 0; c0 < cols; c0 += tile) {
            const std::size_t r1 = std::min(rows, r0 + tile), c1 = std::min(cols, c0 + tile);
            for (std::size_t c = c0; c < c1; ++c)
                for (std::size_t r = r0; r < r1; ++r) dst[c * ld_dst + r] = src[r * cols + c];
        }
}

template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, const Tensor<T>& a, const Tensor<T>& b, T beta, Tensor<T>& c) {
    if (a.dimension() != 2 || b.dimension() != 2 || c.dimension() != 2) {
        throw ShapeError(fmt::format("gemm: needs 2-D tensors, got {}, {} and {}", shape_str(shape_of(a)),
                                     shape_str(shape_of(b)), shape_str(shape_of(c))));
    }
    std::size_t m = trans_a ? a.shape(1) : a.shape(0);
    std::size_t k = trans_a ? a.shape(0) : a.shape(1);
    std::size_t kb = trans_b ? b.shape(1) : b.shape(0);
    std::size_t n = trans_b ? b.shape(0) : b.shape(1);
    if (k != kb || c.shape(0) != m || c.shape(1) != n) {
        throw ShapeError(fmt::format("gemm: op(A) {} x op(B) {} does not give C {}", shape_str({m, k}),
                                     shape_str({kb, n}), shape_str(shape_of(c))));
    }
    gemm_raw<T>(trans_a, trans_b, m, n, k, alpha, a.data(), a.shape(1), b.data(), b.shape(1), beta, c.data(),
                c.shape(1));
}

template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
    auto fail = [&] {
        return ShapeError(fmt::format("matmul: cannot multiply shapes {} and {}", shape_str(shape_of(a)),
                                      shape_str(shape_of(b))));
    };
    const std::size_t ra = a.dimension(), rb = b.dimension();
    if (!((ra == 2 && rb == 2) || (ra == 3 && (rb == 2 || rb == 3)))) throw fail();
    const std::size_t m = a.shape(ra - 2), k = a.shape(ra - 1);
    const std::size_t n = b.shape(rb - 1);
    if (b.shape(rb - 2) != k) throw fail();
    if (ra == 2) {
        Tensor<T> c = Tensor<T>::from_shape({m, n});
        gemm_raw<T>(false, false, m, n, k, T(1), a.data(), k, b.data(), n, T(0), c.data(), n);
        return c;
    }
    const std::size_t batch = a.shape(0);
    if (rb == 2) {
        // One GEMM over all batches: (batch*m, k) x (k, n).
        Tensor<T> c = Tensor<T>::from_shape({batch, m, n});
        gemm_raw<T>(false, false, batch * m, n, k, T(1), a.data(), k, b.data(), n, T(0), c.data(), n);
        return c;
    }
    if (b.shape(0) != batch) throw fail();
    Tensor<T> c = Tensor<T>::from_shape({batch, m, n});
    for (std::size_t i = 0; i < batch; ++i) {
        gemm_raw<T>(false, false, m, n, k, T(1), a.data() + i * m * k, k, b.data() + i * k * n, n, T(0),
                    c.data() + i * m * n, n);
    }
    return c;
}

template void gemm_raw<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                              const float*, std::size_t, float, float*, std::size_t);
template void gemm_raw<double>(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*, std::size_t,
                               const double*, std::size_t, double, double*, std::size_t);
template void transpose_raw<float>(std::size_t, std::size_t, const float*, float*, std::size_t);
template void transpose_raw<double>(std::size_t, std::size_t, const double*, double*, std::size_t);
template void gemm<float>(bool, bool, float, const Tensor<float>&, const Tensor<float>&, float, Tensor<float>&);
template void gemm<double>(bool, bool, double, const Tensor<double>&, const Tensor<double>&, double,
                           Tensor<double>&);
template Tensor<float> matmul(const Tensor<float>&, const Tensor<float>&);
template Tensor<double> matmul(const Tensor<double>&, const Tensor<double>&);

}  // namespace xgrad
