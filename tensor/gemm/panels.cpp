// A kernel of our own for products against a B laid out once: the recurrent step's h_{t-1} · W_hhᵀ
// and its backward, tens of rows against a whole weight. A library's sgemm packs B into panels again
// on every call; here the panels are laid out once, as oneDNN's RNN primitives lay out their weights.
// It beat OpenBLAS's and oneDNN's sgemm on a Zen 3 core at the recurrent step's shapes (measured in
// commit b69d95e; bench/bench_gemm times them). The measurement in choice.cpp decides where it pays. The kernel itself is in panels_kernel.cpp, compiled once per
// instruction set.
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include <omp.h>

#include "../allocator.hpp"
#include "../isa_kernels.hpp"
#include "provider.hpp"

namespace xgrad::blas {

XGRAD_FOR_EACH_ISA(template <class T> std::size_t panel_width();
                   template <class T> void pack_panels(std::size_t n, std::size_t k, const T* b, bool trans_b, T* panels);
                   template <class T>
                   void panel_product(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda,
                                      const T* panels, std::size_t first_panel, std::size_t last_panel, T* c,
                                      std::size_t ldc, bool accumulate);)

namespace {
template <class T>
class PanelProduct final : public Packed<T> {
  public:
    PanelProduct(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda, std::size_t ldc,
                 int threads)
        : m_(m), n_(n), k_(k), lda_(lda), ldc_(ldc), threads_(threads) {
        const std::size_t width = XGRAD_ISA_PICK(panel_width<T>)();
        panel_count_ = (n + width - 1) / width;
        panels_.resize(panel_count_ * width * k);  // 64-byte aligned, as the kernel's loads need
        XGRAD_ISA_PICK(pack_panels<T>)(n, k, b, trans_b, panels_.data());
    }

    void run(const T* a, T* c, bool accumulate) const override {
        const auto product = XGRAD_ISA_PICK(panel_product<T>);
        const int threads = std::min<int>(threads_, static_cast<int>(panel_count_));
        if (threads <= 1) {
            product(m_, n_, k_, a, lda_, panels_.data(), 0, panel_count_, c, ldc_, accumulate);
            return;
        }
        // Each thread a contiguous run of panels: its own columns of C.
#pragma omp parallel num_threads(threads)
        {
            const std::size_t id = static_cast<std::size_t>(omp_get_thread_num()), all = static_cast<std::size_t>(omp_get_num_threads());
            const std::size_t first = panel_count_ * id / all, last = panel_count_ * (id + 1) / all;
            product(m_, n_, k_, a, lda_, panels_.data(), first, last, c, ldc_, accumulate);
        }
    }

  private:
    std::size_t m_, n_, k_, lda_, ldc_, panel_count_ = 0;
    int threads_;
    std::vector<T, storage::AlignedAllocator<T>> panels_;
};

template <class T>
class Panels final : public Provider<T> {
  public:
    std::string_view name() const override { return "panels"; }
    std::string description() const override { return "xgrad's panel kernel"; }
    bool runs(const Shape& shape) const override { return shape.packed; }
    bool sets_threads() const override { return true; }
    void multiply(const Product<T>&, int) const override {
        throw std::logic_error("gemm: panels runs products against a B laid out once only");
    }
    std::unique_ptr<Packed<T>> pack(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda,
                                    std::size_t ldc, int threads) const override {
        return std::make_unique<PanelProduct<T>>(m, n, k, b, trans_b, lda, ldc, threads);
    }
};
}  // namespace

template <class T>
const Provider<T>* panels() {
    static const Panels<T> provider;
    return &provider;
}

template const Provider<float>* panels<float>();
template const Provider<double>* panels<double>();

}  // namespace xgrad::blas
