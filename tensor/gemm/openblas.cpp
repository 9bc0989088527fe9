// OpenBLAS: float and double, its own threads (OPENBLAS_NUM_THREADS, xgrad::set_blas_threads). It
// picks its kernels for the CPU at run time (OPENBLAS_CORETYPE overrides that; 0.3.21 falls back to
// SSE3 or AVX2 kernels on CPUs newer than it). This file must not include xtensor-blas: its CBLAS
// declarations clash with <cblas.h>.
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
    std::string_view name() const override { return "openblas"; }
    std::string description() const override {
        return fmt::format("OpenBLAS ({} kernels)", openblas_get_corename());
    }
    bool runs(const Shape&) const override { return true; }
    void multiply(const Product<T>& p, int) const override {
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
