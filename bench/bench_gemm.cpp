// The GEMM rates behind a recurrent step, per provider, in one run, beside the machine's FMA peak:
// single thread, fp32, row-major C = A·Bᵀ at the shapes a char-LM step runs (recurrent step,
// output head, weight gradient), a tiny step, and a large square; B is fixed, as a layer's weight
// is, so providers that lay it out once (untimed) show what xgrad::PrepackedGemm gains. The providers are those found at
// build time (OpenBLAS always; oneDNN and Eigen when installed). libxsmm 1.17 is not among them: it
// generates no kernel for a transposed A, which the row-major C = A·Bᵀ needs in its column-major
// terms, and its BLAS-style entry hands these sizes to BLAS.
//
//   bench_gemm            # markdown table, median of 7 timed batches per cell
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>
#ifdef BENCH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif
#ifdef BENCH_HAVE_EIGEN
#include <Eigen/Core>
#endif

#include "fma_peak.hpp"

namespace {
struct Shape {
    long m, n, k;
    const char* what;
};

// Row-major C(m,n) = A(m,k) · B(n,k)ᵀ for many A against one B, as a layer multiplies by its weight.
// A provider may lay B out once (prepare, untimed) before the products (timed).
using Product = std::function<void(const float* a, float* c)>;
using Prepare = std::function<Product(long m, long n, long k, const float* b)>;

struct Provider {
    std::string name;
    Prepare prepare;
};

std::vector<Provider> providers() {
    std::vector<Provider> out;
    out.push_back({"OpenBLAS", [](long m, long n, long k, const float* b) -> Product {
        return [=](const float* a, float* c) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
        };
    }});
#ifdef BENCH_HAVE_DNNL
    out.push_back({"oneDNN sgemm", [](long m, long n, long k, const float* b) -> Product {
        return [=](const float* a, float* c) { dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, b, k, 0.0f, c, n); };
    }});
    // What xgrad::PrepackedGemm does with a recurrent step's W_hh: Bᵀ laid out once, then C = A·B.
    out.push_back({"oneDNN sgemm, Bᵀ laid out once", [](long m, long n, long k, const float* b) -> Product {
        auto laid_out = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n * k));
        for (long j = 0; j < n; ++j)
            for (long p = 0; p < k; ++p) (*laid_out)[static_cast<std::size_t>(p * n + j)] = b[j * k + p];
        return [=](const float* a, float* c) { dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, laid_out->data(), n, 0.0f, c, n); };
    }});
    // oneDNN's matmul with B reordered once into the blocked format its kernels read.
    out.push_back({"oneDNN matmul, B blocked once", [](long m, long n, long k, const float* b) -> Product {
        using dnnl::memory;
        auto engine = std::make_shared<dnnl::engine>(dnnl::engine::kind::cpu, 0);
        auto stream = std::make_shared<dnnl::stream>(*engine);
        const memory::desc a_desc({m, k}, memory::data_type::f32, memory::format_tag::ab);
        const memory::desc c_desc({m, n}, memory::data_type::f32, memory::format_tag::ab);
        const memory::desc given({k, n}, memory::data_type::f32, memory::format_tag::ba);  // B (n, k) row-major
        const memory::desc any({k, n}, memory::data_type::f32, memory::format_tag::any);
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_desc, any, c_desc), *engine);
        auto product = std::make_shared<dnnl::matmul>(pd);
        auto weights = std::make_shared<memory>(pd.weights_desc(), *engine);
        memory source(given, *engine, const_cast<float*>(b));
        dnnl::reorder(source, *weights).execute(*stream, source, *weights);
        return [=](const float* a, float* c) {
            memory a_mem(a_desc, *engine, const_cast<float*>(a)), c_mem(c_desc, *engine, c);
            product->execute(*stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, *weights}, {DNNL_ARG_DST, c_mem}});
        };
    }});
#endif
#ifdef BENCH_HAVE_EIGEN
    out.push_back({"Eigen", [](long m, long n, long k, const float* b) -> Product {
        return [=](const float* a, float* c) {
            using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
            Eigen::Map<const Matrix> A(a, m, k), B(b, n, k);
            Eigen::Map<Matrix> C(c, m, n);
            C.noalias() = A * B.transpose();
        };
    }});
#endif
    return out;
}

double gflops(const Provider& p, const Shape& s) {
    std::vector<float> a(static_cast<std::size_t>(s.m * s.k)), b(static_cast<std::size_t>(s.n * s.k)), c(static_cast<std::size_t>(s.m * s.n));
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) * 0.1f;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 5) * 0.1f;
    const Product product = p.prepare(s.m, s.n, s.k, b.data());
    const double flop = 2.0 * static_cast<double>(s.m * s.n * s.k);
    const long reps = std::max(1L, static_cast<long>(2e8 / flop));  // about 0.2 GFLOP per batch
    for (long r = 0; r < reps; ++r) product(a.data(), c.data());  // warm-up, JIT
    std::vector<double> rates;
    for (int batch = 0; batch < 7; ++batch) {
        const auto start = std::chrono::steady_clock::now();
        for (long r = 0; r < reps; ++r) product(a.data(), c.data());
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        rates.push_back(flop * static_cast<double>(reps) / seconds / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}
}  // namespace

int main() {
    openblas_set_num_threads(1);
    omp_set_num_threads(1);  // oneDNN's threads
    const bench::Peak peak = bench::fma_peak();
    fmt::print("# GEMM rates, 1 thread, fp32, C = A·Bᵀ (GFLOP/s, median of 7)\n\n");
    fmt::print("FMA peak of one core ({}): {:.1f} GFLOP/s\n\n", peak.isa, peak.gflops);
    const std::vector<Shape> shapes = {{32, 256, 256, "M recurrent step"},   {64, 512, 512, "L recurrent step"},
                                       {2048, 96, 256, "M output head"},     {256, 256, 2048, "M weight gradient"},
                                       {1, 100, 100, "S step"},              {1024, 1024, 1024, "square"}};
    const auto list = providers();
    fmt::print("| M × N × K |");
    for (const auto& p : list) fmt::print(" {} |", p.name);
    fmt::print("\n|---|");
    for (std::size_t i = 0; i < list.size(); ++i) fmt::print("---:|");
    fmt::print("\n");
    for (const Shape& s : shapes) {
        fmt::print("| {} × {} × {} ({}) |", s.m, s.n, s.k, s.what);
        for (const auto& p : list) {
            try {
                const double rate = gflops(p, s);
                fmt::print(" {:.1f} ({:.0f}%) |", rate, peak.gflops > 0 ? 100 * rate / peak.gflops : 0.0);
            } catch (const std::exception& e) {
                fmt::print(" - |");
                fmt::print(stderr, "{}\n", e.what());
            }
        }
        fmt::print("\n");
    }
    return 0;
}
