// A register-blocked kernel of our own for products of a few rows against a B laid out once (a
// batch of one: 1 x 100 x 100 ran 1.6x faster than a library call, whose set-up costs more than
// the product). It runs on the calling thread; the measurement in choice.cpp decides where it pays.
// The kernel itself is in small_rows_kernel.cpp, compiled once per instruction set.
#include <stdexcept>

#include "../isa_kernels.hpp"
#include "provider.hpp"

namespace xgrad::blas {

XGRAD_FOR_EACH_ISA(template <class T> void small_rows_product(std::size_t m, std::size_t n, std::size_t k, const T* a,
                                                          std::size_t lda, const T* b, std::size_t ldb, T* c,
                                                          std::size_t ldc, bool accumulate);)

namespace {
// Up to this many rows it is offered at all: its cost grows with each row, a library's does not.
constexpr std::size_t most_rows = 16;

template <class T>
class SmallRowsProduct final : public Packed<T> {
  public:
    SmallRowsProduct(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda, std::size_t ldc)
        : layout_(n, k, b, trans_b), m_(m), lda_(lda), ldc_(ldc) {}
    void run(const T* a, T* c, bool accumulate) const override {
        XGRAD_ISA_PICK(small_rows_product<T>)(m_, layout_.n, layout_.k, a, lda_, layout_.values.get(), layout_.ldb, c, ldc_,
                                             accumulate);
    }

  private:
    PlainLayout<T> layout_;
    std::size_t m_, lda_, ldc_;
};

template <class T>
class SmallRows final : public Provider<T> {
  public:
    std::string_view name() const override { return "small-rows"; }
    std::string description() const override { return "xgrad's small-rows kernel"; }
    bool runs(const Shape& shape) const override { return shape.packed && shape.m <= most_rows; }
    void multiply(const Product<T>&, int) const override {
        throw std::logic_error("gemm: small-rows runs products against a B laid out once only");
    }
    std::unique_ptr<Packed<T>> pack(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda,
                                    std::size_t ldc, int) const override {
        return std::make_unique<SmallRowsProduct<T>>(m, n, k, b, trans_b, lda, ldc);
    }
};
}  // namespace

template <class T>
const Provider<T>* small_rows() {
    static const SmallRows<T> provider;
    return &provider;
}

template const Provider<float>* small_rows<float>();
template const Provider<double>* small_rows<double>();

}  // namespace xgrad::blas
