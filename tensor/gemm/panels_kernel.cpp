// The panel kernel (panels.cpp), compiled once per instruction set (tensor/isa_kernels.hpp).
#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "../instantiate.hpp"

namespace xgrad::blas::XGRAD_ISA_NAMESPACE {

namespace {
template <class T>
using batch = xsimd::batch<T>;

// A panel is two SIMD batches of columns. Rows of C per register block: 6 (12 accumulators of the
// 16 registers SSE and AVX2 have), 12 with AVX-512's 32.
template <class T>
constexpr std::size_t panel_columns = 2 * batch<T>::size;
template <class T>
constexpr std::size_t block_rows = sizeof(batch<T>) >= 64 ? 12 : 6;
// Steps of k per pass over a panel: its slice then takes 16 KiB, half of L1, and is read from there
// by every block of rows.
template <class T>
constexpr std::size_t depth = 16384 / (panel_columns<T> * sizeof(T));

// C(R rows, `count` columns of one panel) (+)= A(R rows, `steps` of k) · panel slice, the R x 2
// accumulators held in registers: each step of k loads two batches of B and broadcasts R values of A.
// The first min(steps, next_steps) steps also ask for the matching lines of the slice after this one
// (`next`) to come towards the core (to L2 where the hint is honoured; Zen 3 fills L1): only the first
// block of rows over a slice reads it from memory, and the weight leaves the caches between a
// recurrent step's products. L layer step (Zen 3, 1 thread, four alternated processes each): GRU
// 630-705 ms against 647-761 without it, LSTM 742-846 against 757-854.
template <class T, std::size_t R>
void block(std::size_t steps, const T* a, std::size_t lda, const T* panel, T* c, std::size_t ldc, std::size_t count, bool add,
           const T* next, std::size_t next_steps) {
    constexpr std::size_t W = batch<T>::size;
    std::array<batch<T>, R> low, high;
    low.fill(batch<T>(T(0)));
    high.fill(batch<T>(T(0)));
    // C's lines are read only after the loop over k: ask for them now, so that a C written long
    // before (a step's input projection, far out in memory) arrives while the loop runs. The LSTM L
    // step's forward products took 1.58-1.72 ms a call with this, 1.71-1.76 without (noisy machine).
    if (add)
        for (std::size_t r = 0; r < R; ++r) {
            __builtin_prefetch(c + r * ldc);  // the row's two batches span up to three lines
            __builtin_prefetch(c + r * ldc + W);
            __builtin_prefetch(c + r * ldc + 2 * W - 1);
        }
    const auto step = [&](std::size_t p) __attribute__((always_inline)) {  // the accumulators stay in registers
        const batch<T> b0 = batch<T>::load_aligned(panel + p * 2 * W), b1 = batch<T>::load_aligned(panel + p * 2 * W + W);
        for (std::size_t r = 0; r < R; ++r) {
            const batch<T> ar(a[r * lda + p]);
            low[r] = xsimd::fma(ar, b0, low[r]);
            high[r] = xsimd::fma(ar, b1, high[r]);
        }
    };
    std::size_t p = 0;
    for (; p < std::min(steps, next_steps); ++p) {
        for (std::size_t line = 0; line < 2 * W * sizeof(T); line += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(next + p * 2 * W) + line, 0, 2);
        step(p);
    }
    for (; p < steps; ++p) step(p);
    for (std::size_t r = 0; r < R; ++r) {
        T* row = c + r * ldc;
        if (count == 2 * W) {
            if (add) {
                low[r] += batch<T>::load_unaligned(row);
                high[r] += batch<T>::load_unaligned(row + W);
            }
            low[r].store_unaligned(row);
            high[r].store_unaligned(row + W);
        } else {  // the last panel, cut to the columns C has
            alignas(64) std::array<T, 2 * W> out;
            low[r].store_aligned(out.data());
            high[r].store_aligned(out.data() + W);
            for (std::size_t j = 0; j < count; ++j) row[j] = add ? row[j] + out[j] : out[j];
        }
    }
}

// block<T, R> for R = 1 .. block_rows, indexed by R - 1: the last block of rows has fewer.
template <class T, std::size_t... R>
constexpr auto blocks(std::index_sequence<R...>) {
    return std::array{&block<T, R + 1>...};
}
}  // namespace

template <class T>
std::size_t panel_width() {
    return panel_columns<T>;
}

// op(B) (k x n) as panels of panel_width() columns, each panel's k rows contiguous, the columns past n
// zero. `panels` holds k * panel_width() * ceil(n / panel_width()) values, 64-byte aligned.
template <class T>
void pack_panels(std::size_t n, std::size_t k, const T* b, bool trans_b, T* panels) {
    constexpr std::size_t P = panel_columns<T>;
    for (std::size_t j0 = 0; j0 < n; j0 += P) {
        T* panel = panels + (j0 / P) * k * P;
        const std::size_t count = std::min(P, n - j0);
        for (std::size_t p = 0; p < k; ++p) {
            for (std::size_t j = 0; j < count; ++j) panel[p * P + j] = trans_b ? b[(j0 + j) * k + p] : b[p * n + j0 + j];
            std::fill(panel + p * P + count, panel + (p + 1) * P, T(0));
        }
    }
}

// C(m, columns [first_panel, last_panel) of n) (+)= A(m, k) · the packed B: a panel's slice of `depth`
// steps stays in L1 while every block of rows runs against it.
template <class T>
void panel_product(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* panels,
                   std::size_t first_panel, std::size_t last_panel, T* c, std::size_t ldc, bool accumulate) {
    constexpr std::size_t P = panel_columns<T>, R = block_rows<T>;
    constexpr auto by_rows = blocks<T>(std::make_index_sequence<R>());
    for (std::size_t q = first_panel; q < last_panel; ++q) {
        const std::size_t j0 = q * P, count = std::min(P, n - j0);
        for (std::size_t p0 = 0; p0 < k; p0 += depth<T>) {
            const std::size_t steps = std::min(depth<T>, k - p0);
            const T* slice = panels + q * k * P + p0 * P;
            const bool add = accumulate || p0 > 0;
            // Steps of B after this slice in this call's panels: a thread prefetches only its own.
            const std::size_t after = (last_panel - q) * k - p0 - steps;
            for (std::size_t i0 = 0; i0 < m; i0 += R) {
                const std::size_t rows = std::min(R, m - i0);
                by_rows[rows - 1](steps, a + i0 * lda + p0, lda, slice, c + i0 * ldc + j0, ldc, count, add,
                                  slice + steps * P, i0 == 0 ? after : 0);
            }
        }
    }
}

#define PANELS_KERNEL_INSTANCES(T)                                                                                       \
    template std::size_t panel_width<T>();                                                                           \
    template void pack_panels<T>(std::size_t, std::size_t, const T*, bool, T*);                                      \
    template void panel_product<T>(std::size_t, std::size_t, std::size_t, const T*, std::size_t, const T*, std::size_t, \
                                   std::size_t, T*, std::size_t, bool);
XGRAD_FOR_FLOAT_AND_DOUBLE(PANELS_KERNEL_INSTANCES)

}  // namespace xgrad::blas::XGRAD_ISA_NAMESPACE
