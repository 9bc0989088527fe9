// PrepackedGemm: one B, many products, laid out once by the provider chosen for the shape
// (gemm/choice.cpp).
#include "linalg.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "gemm/choice.hpp"

namespace xgrad {

template <class T>
struct PrepackedGemm<T>::Impl {
    std::size_t m, n, k, ldc;
    std::unique_ptr<blas::Packed<T>> packed;  // null when the product is empty or k is 0
};

template <class T>
PrepackedGemm<T>::PrepackedGemm(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda,
                                std::size_t ldc)
    : impl_(std::make_unique<Impl>()) {
    if (lda < k || ldc < n) {
        throw ShapeError(fmt::format("PrepackedGemm: {} x {} x {} with lda {} and ldc {} (need lda >= k, ldc >= n)", m, n, k,
                                     lda, ldc));
    }
    impl_->m = m;
    impl_->n = n;
    impl_->k = k;
    impl_->ldc = ldc;
    if (m > 0 && n > 0 && k > 0) impl_->packed = blas::pack_chosen<T>(blas::Shape{m, n, k, false, trans_b, true}, b, lda, ldc);
}

template <class T>
PrepackedGemm<T>::PrepackedGemm(PrepackedGemm&&) noexcept = default;
template <class T>
PrepackedGemm<T>& PrepackedGemm<T>::operator=(PrepackedGemm&&) noexcept = default;
template <class T>
PrepackedGemm<T>::~PrepackedGemm() = default;

template <class T>
void PrepackedGemm<T>::operator()(const T* a, T* c, bool accumulate) const {
    const Impl& p = *impl_;
    if (p.packed) {
        p.packed->run(a, c, accumulate);
        return;
    }
    if (accumulate) return;  // an empty product adds nothing
    for (std::size_t i = 0; i < p.m; ++i) std::fill_n(c + i * p.ldc, p.n, T(0));
}

template class PrepackedGemm<float>;
template class PrepackedGemm<double>;

}  // namespace xgrad
