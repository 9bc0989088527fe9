// oneDNN's sgemm (float): JIT kernels for the CPU's widest vector ISA, detected at run time
// (ONEDNN_MAX_CPU_ISA caps it), on the OpenMP threads it is given.
#include <stdexcept>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.h>

#include "provider.hpp"

namespace xgrad::blas {

namespace {
class OnednnSgemm final : public Provider<float> {
  public:
    std::string_view name() const override { return "onednn"; }
    std::string description() const override {
        const dnnl_version_t* v = dnnl_version();
        return fmt::format("oneDNN {}.{}.{} sgemm", v->major, v->minor, v->patch);
    }
    bool runs(const Shape&) const override { return true; }
    bool sets_threads() const override { return true; }
    void multiply(const Product<float>& p, int threads) const override {
        const auto d = [](std::size_t v) { return static_cast<dnnl_dim_t>(v); };
        const ScopedThreads scoped(threads);
        const dnnl_status_t status = dnnl_sgemm(p.trans_a ? 'T' : 'N', p.trans_b ? 'T' : 'N', d(p.m), d(p.n), d(p.k), p.alpha,
                                                p.a, d(p.lda), p.b, d(p.ldb), p.beta, p.c, d(p.ldc));
        if (status != dnnl_success) {
            throw std::runtime_error(fmt::format("gemm: oneDNN's sgemm failed (status {}) for {} x {} x {}",
                                                 static_cast<int>(status), p.m, p.n, p.k));
        }
    }
};
}  // namespace

const Provider<float>* onednn_sgemm() {
    static const OnednnSgemm provider;
    return &provider;
}

}  // namespace xgrad::blas
