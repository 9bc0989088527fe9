// Independent FMA chains, enough of them to cover the FMA latency on every core we run on; each
// ISA's loop is compiled for that ISA alone (target attributes), so the file builds anywhere and
// runs the one the CPU supports.
#include "fma_peak.hpp"

#include <chrono>
#include <cstring>
#include <initializer_list>

#include <immintrin.h>

namespace bench {

namespace {
constexpr long iterations = 20'000'000;

// Twelve accumulators in named registers (an array would live in memory); the empty asm makes each
// FMA observable, so the compiler can neither fold nor shorten the chains.
#define XGRAD_PEAK_LOOP(vec, fma, zero, x, y)                                                            \
    vec a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero, a6 = zero, a7 = zero, a8 = zero, \
        a9 = zero, a10 = zero, a11 = zero;                                                                \
    for (long i = 0; i < iterations; ++i) {                                                               \
        a0 = fma(a0, x, y); a1 = fma(a1, x, y); a2 = fma(a2, x, y); a3 = fma(a3, x, y);                   \
        a4 = fma(a4, x, y); a5 = fma(a5, x, y); a6 = fma(a6, x, y); a7 = fma(a7, x, y);                   \
        a8 = fma(a8, x, y); a9 = fma(a9, x, y); a10 = fma(a10, x, y); a11 = fma(a11, x, y);               \
        asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),  \
                     "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));                                           \
    }                                                                                                     \
    float total = 0; /* every lane of every chain, so none is dead */                                     \
    for (const vec& a : {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11}) {                             \
        float lanes[sizeof(vec) / sizeof(float)];                                                         \
        std::memcpy(lanes, &a, sizeof a);                                                                 \
        for (float v : lanes) total += v;                                                                 \
    }                                                                                                     \
    return total;

__attribute__((target("avx512f"))) float run_avx512() {
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f), zero = _mm512_setzero_ps();
    XGRAD_PEAK_LOOP(__m512, _mm512_fmadd_ps, zero, x, y)
}

__attribute__((target("avx2,fma"))) float run_avx2() {
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f), zero = _mm256_setzero_ps();
    XGRAD_PEAK_LOOP(__m256, _mm256_fmadd_ps, zero, x, y)
}
#undef XGRAD_PEAK_LOOP

template <class F>
double gflops(F run, int lanes) {
    volatile float sink = run();  // warm-up (and frequency ramp)
    const auto start = std::chrono::steady_clock::now();
    sink = run();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    (void)sink;
    return 2.0 * lanes * 12 * static_cast<double>(iterations) / seconds / 1e9;
}
}  // namespace

Peak fma_peak() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {"avx512f", gflops(run_avx512, 16)};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"avx2+fma", gflops(run_avx2, 8)};
    return {"scalar", 0.0};
}

}  // namespace bench
