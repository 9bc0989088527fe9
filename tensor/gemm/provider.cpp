// What every provider shares: the plain layout of B and the default pack() over it.
#include "provider.hpp"

#include <algorithm>

#include <omp.h>

#include "../linalg.hpp"

namespace xgrad::blas {

template <class T>
PlainLayout<T>::PlainLayout(std::size_t n_, std::size_t k_, const T* b, bool trans_b) : k(k_), n(n_) {
    constexpr std::size_t line = 64 / sizeof(T);
    ldb = (n + line - 1) / line * line;
    values = std::make_unique<T[]>(std::max<std::size_t>(1, k * ldb));  // zeroed: the padding stays 0
    if (trans_b) {
        transpose_raw(n, k, b, values.get(), ldb);
    } else {
        for (std::size_t p = 0; p < k; ++p) std::copy_n(b + p * n, n, values.get() + p * ldb);
    }
}

namespace {
template <class T>
class PlainPacked final : public Packed<T> {
  public:
    PlainPacked(const Provider<T>& provider, std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b,
                std::size_t lda, std::size_t ldc, int threads)
        : provider_(provider), layout_(n, k, b, trans_b), m_(m), lda_(lda), ldc_(ldc), threads_(threads) {}

    void run(const T* a, T* c, bool accumulate) const override {
        Product<T> p;
        p.m = m_;
        p.n = layout_.n;
        p.k = layout_.k;
        p.a = a;
        p.lda = lda_;
        p.b = layout_.values.get();
        p.ldb = layout_.ldb;
        p.beta = accumulate ? T(1) : T(0);
        p.c = c;
        p.ldc = ldc_;
        provider_.multiply(p, threads_);
    }

  private:
    const Provider<T>& provider_;
    PlainLayout<T> layout_;
    std::size_t m_, lda_, ldc_;
    int threads_;
};
}  // namespace

template <class T>
std::unique_ptr<Packed<T>> Provider<T>::pack(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b,
                                             std::size_t lda, std::size_t ldc, int threads) const {
    return std::make_unique<PlainPacked<T>>(*this, m, n, k, b, trans_b, lda, ldc, threads);
}

ScopedThreads::ScopedThreads(int threads) : before_(omp_get_max_threads()) {
    if (threads != before_) omp_set_num_threads(threads);
}

ScopedThreads::~ScopedThreads() {
    if (omp_get_max_threads() != before_) omp_set_num_threads(before_);
}

template struct PlainLayout<float>;
template struct PlainLayout<double>;
template class Provider<float>;
template class Provider<double>;

}  // namespace xgrad::blas
