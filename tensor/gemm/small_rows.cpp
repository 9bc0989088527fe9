// A register-blocked kernel of our own for products of a few rows against a B laid out once (a
// batch of one: 1 x 100 x 100 ran 1.6x faster than a library call, whose set-up costs more than
// the product). It runs on the calling thread; the measurement in choice.cpp decides where it pays.
#include <algorithm>
#include <array>
#include <stdexcept>

#include <xsimd/xsimd.hpp>

#include "provider.hpp"

namespace xgrad::blas {

namespace {
// Up to this many rows it is offered at all: its cost grows with each row, a library's does not.
constexpr std::size_t most_rows = 16;

// Row i of C, columns [j, j + count), from up to NB SIMD batches of accumulators held in registers:
// each step of k is a broadcast of A and NB fused multiply-adds. B's rows are padded to whole
// batches (ldb), so every load is full; only the store is cut to count.
template <class T, std::size_t NB>
void column_block(std::size_t k, const T* a_row, const T* b, std::size_t ldb, T* c_row, std::size_t count, bool accumulate) {
    using batch = xsimd::batch<T>;
    constexpr std::size_t W = batch::size;
    std::array<batch, NB> acc;
    acc.fill(batch(T(0)));
    for (std::size_t p = 0; p < k; ++p) {
        const batch ap(a_row[p]);
        for (std::size_t q = 0; q < NB; ++q) acc[q] = xsimd::fma(ap, batch::load_unaligned(b + p * ldb + q * W), acc[q]);
    }
    alignas(64) std::array<T, NB * W> out;
    for (std::size_t q = 0; q < NB; ++q) acc[q].store_unaligned(out.data() + q * W);
    for (std::size_t j = 0; j < count; ++j) c_row[j] = accumulate ? c_row[j] + out[j] : out[j];
}

// C(m, n) (+)= A(m, k) · B(k, n), B in the plain layout: eight batches of a row of C at a time
// (AVX2 has 16 registers).
template <class T>
void small_rows_product(std::size_t m, const T* a, std::size_t lda, const PlainLayout<T>& b, T* c, std::size_t ldc,
                        bool accumulate) {
    constexpr std::size_t W = xsimd::batch<T>::size, most = 8;
    static_assert(64 % (W * sizeof(T)) == 0, "the plain layout pads B's rows to whole batches");
    const std::size_t n = b.n, k = b.k;
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; j += most * W) {
            const std::size_t count = std::min(n - j, most * W), batches = (count + W - 1) / W;
            const T* a_row = a + i * lda;
            const T* b_block = b.values.get() + j;
            T* c_row = c + i * ldc + j;
            switch (batches) {
                case 1: column_block<T, 1>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                case 2: column_block<T, 2>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                case 3: column_block<T, 3>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                case 4: column_block<T, 4>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                case 5: column_block<T, 5>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                case 6: column_block<T, 6>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                case 7: column_block<T, 7>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
                default: column_block<T, most>(k, a_row, b_block, b.ldb, c_row, count, accumulate); break;
            }
        }
    }
}

template <class T>
class SmallRowsProduct final : public Packed<T> {
  public:
    SmallRowsProduct(std::size_t m, std::size_t n, std::size_t k, const T* b, bool trans_b, std::size_t lda, std::size_t ldc)
        : layout_(n, k, b, trans_b), m_(m), lda_(lda), ldc_(ldc) {}
    void run(const T* a, T* c, bool accumulate) const override {
        small_rows_product(m_, a, lda_, layout_, c, ldc_, accumulate);
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
