// PrepackedGemm: one B, many products. fp32 with many rows goes to oneDNN's matmul primitive with B
// reordered once into its blocked weights format; everything else keeps op(B) as a plain (k, n)
// matrix for the register-blocked kernel below (a few rows) or a plain GEMM (C = A·B, which the
// providers run 20-30% faster at small m than the C = A·Bᵀ a recurrent step would otherwise call).
#include "linalg.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <xsimd/xsimd.hpp>
#ifdef XGRAD_GEMM_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace xgrad {

namespace {

// Up to this many rows, a library call costs more than the product (a batch of one: 1 x 100 x 100
// ran at 44 GFLOP/s through oneDNN's sgemm and 35 through its matmul; see bench_gemm).
constexpr std::size_t small_rows = 4;

#ifdef XGRAD_GEMM_ONEDNN
// From this many rows on, oneDNN's matmul on blocked weights beats its sgemm on the plain layout,
// where the CPU has AVX-512 (its brgemm kernels). Measured on the layer step (A/B builds,
// alternated): at 64 rows (H 512) the matmul was 2-4% faster, at 32 rows (H 256) 1-3% slower,
// though a lone 32 x 1024 x 256 product favours it. Capped to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) the
// matmul ran 64 x 2048 x 512 at 76 GFLOP/s against the sgemm's 126: never there.
constexpr std::size_t blocked_rows = 64;

bool blocked_weights_pay() {
    static const bool avx512 = [] {
        const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa()), core = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
        return (isa & core) == core;  // every AVX-512 level oneDNN names includes avx512_core's bits
    }();
    return avx512;
}
#endif

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

// C(m, n) (+)= A(m, k) · B(k, n) for a few rows of A, B row-major with rows ldb ≥ n apart and
// zero-padded to whole SIMD batches: eight batches of a row of C at a time (AVX2 has 16 registers).
template <class T>
void small_rows_product(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
                        std::size_t ldb, T* c, std::size_t ldc, bool accumulate) {
    constexpr std::size_t W = xsimd::batch<T>::size, most = 8;
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; j += most * W) {
            const std::size_t count = std::min(n - j, most * W), batches = (count + W - 1) / W;
            const T* a_row = a + i * lda;
            T* c_row = c + i * ldc + j;
            switch (batches) {
                case 1: column_block<T, 1>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                case 2: column_block<T, 2>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                case 3: column_block<T, 3>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                case 4: column_block<T, 4>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                case 5: column_block<T, 5>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                case 6: column_block<T, 6>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                case 7: column_block<T, 7>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
                default: column_block<T, most>(k, a_row, b + j, ldb, c_row, count, accumulate); break;
            }
        }
    }
}

#ifdef XGRAD_GEMM_ONEDNN
dnnl::engine& cpu_engine() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

dnnl::stream& cpu_stream() {
    thread_local dnnl::stream stream(cpu_engine());
    return stream;
}

// oneDNN's matmul with B in the weights format it picks ("any"): two primitives, C = A·B and
// C += A·B (a sum post-op). Primitive creation hits oneDNN's primitive cache after the first time
// a shape is seen (~4 µs); the reorder of B is the real cost, once per object.
struct OnednnProduct {
    dnnl::matmul set, add;
    dnnl::memory weights;
    mutable dnnl::memory a, c;
    std::unordered_map<int, dnnl::memory> arguments;  // built once: a map per call cost ~6% at 32 x 256 x 256

    OnednnProduct(std::size_t m, std::size_t n, std::size_t k, const float* b, bool trans_b, std::size_t lda,
                  std::size_t ldc) {
        using dnnl::memory;
        const auto d = [](std::size_t v) { return static_cast<memory::dim>(v); };
        const memory::desc a_desc({d(m), d(k)}, memory::data_type::f32, memory::dims{d(lda), 1});
        const memory::desc c_desc({d(m), d(n)}, memory::data_type::f32, memory::dims{d(ldc), 1});
        const memory::desc given({d(k), d(n)}, memory::data_type::f32, trans_b ? memory::dims{1, d(k)} : memory::dims{d(n), 1});
        const memory::desc any({d(k), d(n)}, memory::data_type::f32, memory::format_tag::any);
        dnnl::engine& engine = cpu_engine();
        const dnnl::matmul::primitive_desc plain(dnnl::matmul::desc(a_desc, any, c_desc), engine);
        dnnl::post_ops sum;
        sum.append_sum(1.0f);
        dnnl::primitive_attr accumulating;
        accumulating.set_post_ops(sum);
        const dnnl::matmul::primitive_desc summed(dnnl::matmul::desc(a_desc, any, c_desc), accumulating, engine);
        if (summed.weights_desc() != plain.weights_desc()) throw dnnl::error(dnnl_unimplemented, "two weight formats");
        set = dnnl::matmul(plain);
        add = dnnl::matmul(summed);
        weights = memory(plain.weights_desc(), engine);
        memory source(given, engine, const_cast<float*>(b));  // read only, by the reorder
        dnnl::reorder(source, weights).execute(cpu_stream(), source, weights);
        a = memory(a_desc, engine, DNNL_MEMORY_NONE);
        c = memory(c_desc, engine, DNNL_MEMORY_NONE);
        arguments = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, c}};
    }

    void run(const float* a_data, float* c_data, bool accumulate) const {
        a.set_data_handle(const_cast<float*>(a_data));  // read only: the matmul's source
        c.set_data_handle(c_data);
        (accumulate ? add : set).execute(cpu_stream(), arguments);
    }
};
#endif
}  // namespace

template <class T>
struct PrepackedGemm<T>::Impl {
    std::size_t m, n, k, lda, ldc;
    std::size_t ldb;       // plain's row length: n rounded up to whole SIMD batches, zero-padded
    std::vector<T> plain;  // op(B) as a row-major (k, n) matrix, when no provider keeps its own copy
#ifdef XGRAD_GEMM_ONEDNN
    std::optional<OnednnProduct> onednn;
#endif
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
    impl_->lda = lda;
    impl_->ldc = ldc;
#ifdef XGRAD_GEMM_ONEDNN
    if constexpr (std::is_same_v<T, float>) {
        if (m >= blocked_rows && n > 0 && k > 0 && blocked_weights_pay()) {
            try {
                impl_->onednn.emplace(m, n, k, b, trans_b, lda, ldc);
                return;
            } catch (const dnnl::error&) {  // a shape or weight format the matmul does not take: the plain layout below
                impl_->onednn.reset();
            }
        }
    }
#endif
    constexpr std::size_t W = xsimd::batch<T>::size;
    const std::size_t ldb = impl_->ldb = (n + W - 1) / W * W;
    impl_->plain.assign(k * ldb, T(0));
    if (trans_b) {
        transpose_raw(n, k, b, impl_->plain.data(), ldb);
    } else {
        for (std::size_t p = 0; p < k; ++p) std::copy_n(b + p * n, n, impl_->plain.data() + p * ldb);
    }
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
#ifdef XGRAD_GEMM_ONEDNN
    if constexpr (std::is_same_v<T, float>) {
        if (p.onednn) {
            p.onednn->run(a, c, accumulate);
            return;
        }
    }
#endif
    if (p.m <= small_rows) {
        small_rows_product(p.m, p.n, p.k, a, p.lda, p.plain.data(), p.ldb, c, p.ldc, accumulate);
    } else {
        gemm_raw<T>(false, false, p.m, p.n, p.k, T(1), a, p.lda, p.plain.data(), p.ldb, accumulate ? T(1) : T(0), c, p.ldc);
    }
}

template class PrepackedGemm<float>;
template class PrepackedGemm<double>;

}  // namespace xgrad
