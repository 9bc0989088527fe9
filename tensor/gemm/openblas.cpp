// OpenBLAS: float and double. Its own thread pool is kept at one thread (threads.cpp): beside
// OpenMP's, which runs oneDNN and the fused rows, two pools of spinning workers fought over the
// cores (a seq2seq step 25-40% slower on 2 threads than on 1). More threads here are OpenMP's, each
// running OpenBLAS on its slice of C. OpenBLAS picks its kernels for the CPU at run time
// (OPENBLAS_CORETYPE overrides that; 0.3.21 falls back to SSE3 or AVX2 kernels on CPUs newer than
// it). This file must not include xtensor-blas: its CBLAS declarations clash with <cblas.h>.
#include <algorithm>
#include <type_traits>

#include <cblas.h>
#include <fmt/format.h>

#include "provider.hpp"

namespace xgrad::blas {

namespace {
CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }
blasint dim(std::size_t n) { return static_cast<blasint>(n); }

template <class T>
class OpenBlas final : public Provider<T> {
  public:
    OpenBlas() { openblas_set_num_threads(1); }
    std::string_view name() const override { return "openblas"; }
    std::string description() const override {
        return fmt::format("OpenBLAS ({} kernels)", openblas_get_corename());
    }
    bool runs(const Shape&) const override { return true; }
    bool sets_threads() const override { return true; }
    void multiply(const Product<T>& p, int threads) const override {
        // C split along its longer side into slices of whole 16-wide tiles, at least one per thread.
        const bool by_rows = p.m >= p.n;
        const std::size_t extent = by_rows ? p.m : p.n, tile = 16;
        const auto slices = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(threads, 1)), extent / tile));
        if (slices <= 1) return multiply_here(p);
#pragma omp parallel for num_threads(slices) schedule(static)
        for (int s = 0; s < slices; ++s) {
            const auto bound = [&](int i) { return i == slices ? extent : extent * static_cast<std::size_t>(i) / static_cast<std::size_t>(slices) / tile * tile; };
            const std::size_t begin = bound(s), size = bound(s + 1) - begin;
            Product<T> part = p;
            if (by_rows) {
                part.m = size;
                part.a = p.trans_a ? p.a + begin : p.a + begin * p.lda;
                part.c = p.c + begin * p.ldc;
            } else {
                part.n = size;
                part.b = p.trans_b ? p.b + begin * p.ldb : p.b + begin;
                part.c = p.c + begin;
            }
            multiply_here(part);
        }
    }

  private:
    static void multiply_here(const Product<T>& p) {
        if constexpr (std::is_same_v<T, float>) {
            cblas_sgemm(CblasRowMajor, op(p.trans_a), op(p.trans_b), dim(p.m), dim(p.n), dim(p.k), p.alpha, p.a, dim(p.lda),
                        p.b, dim(p.ldb), p.beta, p.c, dim(p.ldc));
        } else {
            cblas_dgemm(CblasRowMajor, op(p.trans_a), op(p.trans_b), dim(p.m), dim(p.n), dim(p.k), p.alpha, p.a, dim(p.lda),
                        p.b, dim(p.ldb), p.beta, p.c, dim(p.ldc));
        }
    }
};
}  // namespace

template <class T>
const Provider<T>* openblas() {
    static const OpenBlas<T> provider;
    return &provider;
}

template const Provider<float>* openblas<float>();
template const Provider<double>* openblas<double>();

}  // namespace xgrad::blas
