// The small-rows kernel (small_rows.cpp), compiled once per instruction set (tensor/isa_kernels.hpp).
#include <algorithm>
#include <array>
#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace xgrad::blas::XGRAD_ISA_NAMESPACE {

namespace {
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

}  // namespace

// C(m, n) (+)= A(m, k) · B(k, n), B row-major with rows ldb apart, padded with zeros to whole 64-byte
// lines (PlainLayout): eight batches of a row of C at a time (AVX2 has 16 registers).
template <class T>
void small_rows_product(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
                        std::size_t ldb, T* c, std::size_t ldc, bool accumulate) {
    constexpr std::size_t W = xsimd::batch<T>::size, most = 8;
    static_assert(64 % (W * sizeof(T)) == 0, "the plain layout pads B's rows to whole batches");
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; j += most * W) {
            const std::size_t count = std::min(n - j, most * W), batches = (count + W - 1) / W;
            const T* a_row = a + i * lda;
            const T* b_block = b + j;
            T* c_row = c + i * ldc + j;
            switch (batches) {
                case 1: column_block<T, 1>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                case 2: column_block<T, 2>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                case 3: column_block<T, 3>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                case 4: column_block<T, 4>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                case 5: column_block<T, 5>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                case 6: column_block<T, 6>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                case 7: column_block<T, 7>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
                default: column_block<T, most>(k, a_row, b_block, ldb, c_row, count, accumulate); break;
            }
        }
    }
}

template void small_rows_product<float>(std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                                        std::size_t, float*, std::size_t, bool);
template void small_rows_product<double>(std::size_t, std::size_t, std::size_t, const double*, std::size_t, const double*,
                                         std::size_t, double*, std::size_t, bool);

}  // namespace xgrad::blas::XGRAD_ISA_NAMESPACE
