// tensor/: shapes, broadcasting, random numbers and initializers, BLAS products, printing.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

using xgrad::Shape;
using xgrad::Tensor;

TEST_CASE("shape helpers") {
    CHECK(xgrad::shape_str({}) == "()");
    CHECK(xgrad::shape_str({3}) == "(3,)");
    CHECK(xgrad::shape_str({2, 3}) == "(2, 3)");
    CHECK(xgrad::numel({2, 3, 4}) == 24);
    CHECK(xgrad::numel({}) == 1);
    CHECK(xgrad::broadcast_shapes("op", {2, 1, 4}, {3, 1}) == Shape{2, 3, 4});
    CHECK(xgrad::broadcast_shapes("op", {}, {5}) == Shape{5});
    CHECK_THROWS_WITH_AS(xgrad::broadcast_shapes("add", {2, 3}, {4}),
                         "add: shapes (2, 3) and (4,) cannot be broadcast together", xgrad::ShapeError);
    CHECK(xgrad::normalize_axis("op", -1, 3) == 2);
    CHECK_THROWS_WITH_AS(xgrad::normalize_axis("sum", 3, 3), doctest::Contains("sum: axis 3"), xgrad::ShapeError);
}

TEST_CASE("element counts are overflow-checked wherever dimensions are multiplied") {
    const std::size_t huge = (std::size_t{1} << 62) + 1;
    CHECK_THROWS_WITH_AS(xgrad::numel({huge, 4}, "from_shape"), doctest::Contains("from_shape: shape (4611686018427387905, 4)"),
                         xgrad::ShapeError);
    CHECK_THROWS_AS(xgrad::numel({std::size_t{1} << 40, std::size_t{1} << 40, 0}), xgrad::ShapeError);  // as safetensors
    CHECK(xgrad::numel({std::size_t{1} << 31, std::size_t{1} << 32}) == std::size_t{1} << 63);
    CHECK_THROWS_AS(xgrad::checked_mul(std::size_t{1} << 33, std::size_t{1} << 31, "op", "a size"), xgrad::ShapeError);
    xgrad::Generator gen(1);
    CHECK_THROWS_WITH_AS(xgrad::uniform<float>({huge, 4}, 0, 1, gen), doctest::Contains("uniform:"), xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(xgrad::normal<double>({huge, huge}, 0, 1, gen), doctest::Contains("normal:"), xgrad::ShapeError);
    CHECK_THROWS_WITH_AS(xgrad::bernoulli<float>({4, huge}, 0.5, gen), doctest::Contains("bernoulli:"), xgrad::ShapeError);
    // reshape: the product of the target shape used to wrap around to 4, pass, and corrupt xtensor's strides.
    xgrad::Graph<double> g;
    auto a = g.constant(Tensor<double>{1, 2, 3, 4});
    const auto h = static_cast<std::ptrdiff_t>(huge);
    CHECK_THROWS_WITH_AS(xgrad::reshape(a, {h, 4}), doctest::Contains("reshape: cannot reshape (4,)"), xgrad::ShapeError);
    CHECK_THROWS_AS(xgrad::reshape(a, {h, 4, -1}), xgrad::ShapeError);
    CHECK(xgrad::shape_of(xgrad::reshape(a, {2, -1}).value()) == Shape{2, 2});
}

TEST_CASE("sum_to undoes broadcasting") {
    Tensor<double> g = xt::ones<double>({2, 3, 4});
    CHECK(xgrad::sum_to(g, {3, 1}) == Tensor<double>(xt::full_like(Tensor<double>::from_shape({3, 1}), 8.0)));
    CHECK(xgrad::sum_to(g, {}) == Tensor<double>(24.0));
    CHECK(xgrad::sum_to(g, {2, 3, 4}) == g);
}

TEST_CASE("the generator is seeded and reproducible, and its state round-trips") {
    xgrad::Generator a(7), b(7), c(8);
    CHECK(a.next_u64() == b.next_u64());
    CHECK(a.next_u64() != c.next_u64());
    a.normal(0, 1);  // leaves a spare normal inside the state
    std::string saved = a.state();
    double next = a.normal(0, 1), after = a.uniform01();
    xgrad::Generator d(0);
    d.set_state(saved);
    CHECK(d.normal(0, 1) == next);
    CHECK(d.uniform01() == after);
    CHECK_THROWS_AS(d.set_state("garbage"), std::invalid_argument);
    for (int i = 0; i < 1000; ++i) CHECK(a.below(7) < 7);
}

TEST_CASE("distributions and initializers have the right moments and bounds") {
    xgrad::Generator gen(1);
    Tensor<double> n = xgrad::normal<double>({100000}, 2.0, 3.0, gen);
    CHECK(xt::mean(n)() == doctest::Approx(2.0).epsilon(0.02));
    CHECK(xt::stddev(n)() == doctest::Approx(3.0).epsilon(0.02));
    Tensor<float> u = xgrad::uniform<float>({1000}, -1.0, 1.0, gen);
    CHECK(xt::amin(u)() >= -1.0f);
    CHECK(xt::amax(u)() < 1.0f);
    // Xavier uniform bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 300) for a (100, 200) weight.
    Tensor<double> xu = xgrad::xavier_uniform<double>({100, 200}, gen);
    const double bound = std::sqrt(6.0 / 300.0);
    CHECK(xt::amax(xt::abs(xu))() <= bound);
    CHECK(xt::amax(xt::abs(xu))() > 0.95 * bound);
    Tensor<double> xn = xgrad::xavier_normal<double>({100, 200}, gen);
    CHECK(xt::stddev(xn)() == doctest::Approx(std::sqrt(2.0 / 300.0)).epsilon(0.03));
    Tensor<double> kn = xgrad::kaiming_normal<double>({300, 200}, gen);
    CHECK(xt::stddev(kn)() == doctest::Approx(std::sqrt(2.0 / 200.0)).epsilon(0.03));
    Tensor<double> ku = xgrad::kaiming_uniform<double>({300, 200}, gen);
    CHECK(xt::amax(xt::abs(ku))() <= std::sqrt(6.0 / 200.0));
    CHECK_THROWS_AS(xgrad::xavier_uniform<float>({5}, gen), xgrad::ShapeError);
}

TEST_CASE("matmul: 2-D, batched 3-D and 3-D by 2-D against hand-computed products") {
    Tensor<double> a = {{1, 2, 3}, {4, 5, 6}};
    Tensor<double> b = {{1, 0}, {0, 1}, {1, 1}};
    CHECK(xgrad::matmul(a, b) == Tensor<double>{{4, 5}, {10, 11}});
    Tensor<double> a3 = {{{1, 2, 3}, {4, 5, 6}}, {{2, 4, 6}, {8, 10, 12}}};
    Tensor<double> b3 = {{{1, 0}, {0, 1}, {1, 1}}, {{1, 0}, {0, 1}, {1, 1}}};
    CHECK(xgrad::matmul(a3, b3) == Tensor<double>{{{4, 5}, {10, 11}}, {{8, 10}, {20, 22}}});
    CHECK(xgrad::matmul(a3, b) == Tensor<double>{{{4, 5}, {10, 11}}, {{8, 10}, {20, 22}}});
    Tensor<float> af = {{1, 2}, {3, 4}};
    CHECK(xgrad::matmul(af, af) == Tensor<float>{{7, 10}, {15, 22}});
    CHECK_THROWS_WITH_AS(xgrad::matmul(a, a), "matmul: cannot multiply shapes (2, 3) and (2, 3)", xgrad::ShapeError);
    CHECK_THROWS_AS(xgrad::matmul(a3, Tensor<double>(xt::ones<double>({3, 3, 2}))), xgrad::ShapeError);
    // An empty inner dimension gives zeros, not a BLAS error.
    CHECK(xgrad::matmul(Tensor<double>::from_shape({2, 0}), Tensor<double>::from_shape({0, 3})) ==
          Tensor<double>(xt::zeros<double>({2, 3})));
}

TEST_CASE("gemm accumulates into an existing buffer") {
    Tensor<double> a = {{1, 2}, {3, 4}};
    Tensor<double> c = {{1, 1}, {1, 1}};
    xgrad::gemm(false, true, 1.0, a, a, 1.0, c);  // c += a aᵀ
    CHECK(c == Tensor<double>{{6, 12}, {12, 26}});
    Tensor<double> wrong = Tensor<double>::from_shape({3, 2});
    CHECK_THROWS_WITH_AS(xgrad::gemm(false, false, 1.0, a, a, 0.0, wrong),
                         "gemm: op(A) (2, 2) x op(B) (2, 2) does not give C (3, 2)", xgrad::ShapeError);
}

namespace {
// Every provider this build has pinned in turn, then the choice by timing ("auto"); "auto" again after.
struct EveryProvider {
    std::vector<std::string> names;
    EveryProvider() : names(xgrad::gemm_providers()) { names.push_back("auto"); }
    ~EveryProvider() { xgrad::set_gemm_provider("auto"); }
};
}  // namespace

TEST_CASE_TEMPLATE("gemm_raw equals the plain product on every provider, either op of A and B, rows further apart than they need be",
                   T, float, double) {
    const T tolerance = std::is_same_v<T, float> ? T(1e-4) : T(1e-12);
    xgrad::Generator gen(5);
    EveryProvider every;
    for (const std::string& provider : every.names) {
        CAPTURE(provider);
        xgrad::set_gemm_provider(provider);
        for (std::size_t m : {1, 6, 70})
            for (std::size_t n : {1, 9, 130})
                for (std::size_t k : {1, 33})
                    for (bool ta : {false, true})
                        for (bool tb : {false, true}) {
                            CAPTURE(m);
                            CAPTURE(n);
                            CAPTURE(k);
                            CAPTURE(ta);
                            CAPTURE(tb);
                            const std::size_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
                            const Tensor<T> a = xgrad::uniform<T>({ta ? k : m, lda}, -1, 1, gen);
                            const Tensor<T> b = xgrad::uniform<T>({tb ? n : k, ldb}, -1, 1, gen);
                            const Tensor<T> c0 = xgrad::uniform<T>({m, ldc}, -1, 1, gen);
                            Tensor<T> c = c0;
                            const T alpha = T(0.5), beta = T(2);
                            xgrad::gemm_raw<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
                            T worst = 0, gaps_changed = 0;
                            for (std::size_t i = 0; i < m; ++i) {
                                for (std::size_t j = 0; j < n; ++j) {
                                    double sum = 0;
                                    for (std::size_t p = 0; p < k; ++p) sum += double(ta ? a(p, i) : a(i, p)) * double(tb ? b(j, p) : b(p, j));
                                    worst = std::max(worst, T(std::abs(double(c(i, j)) - (double(alpha) * sum + double(beta) * double(c0(i, j))))));
                                }
                                for (std::size_t j = n; j < ldc; ++j) gaps_changed += c(i, j) != c0(i, j);
                            }
                            CHECK(worst < tolerance * T(k));
                            CHECK(gaps_changed == 0);
                        }
    }
}

TEST_CASE("GEMM providers: pinned by name, a bad name refused naming the ones there are, choices listed, saved and restored") {
    EveryProvider every;
    const std::vector<std::string> names = xgrad::gemm_providers();
    CHECK(std::find(names.begin(), names.end(), "openblas") != names.end());
    CHECK(std::find(names.begin(), names.end(), "small-rows") != names.end());
    CHECK_THROWS_WITH_AS(xgrad::set_gemm_provider("mkl"),
                         doctest::Contains("set_gemm_provider: no GEMM provider 'mkl' in this build (auto, "), std::invalid_argument);

    xgrad::set_gemm_provider("openblas");
    CHECK(xgrad::gemm_provider().find("pinned to OpenBLAS") == 0);
    CHECK(xgrad::gemm_choices().empty());  // pinning starts afresh
    xgrad::Generator gen(1);
    const Tensor<float> a = xgrad::uniform<float>({24, 40}, -1, 1, gen), b = xgrad::uniform<float>({40, 24}, -1, 1, gen);
    (void)xgrad::matmul(a, b);
    CHECK(xgrad::gemm_choices().find("float 24 x 40 x 24 A·B at ") == 0);
    CHECK(xgrad::gemm_choices().find(": openblas") != std::string::npos);

    // Measured choices for a plain product and one against a B laid out once, saved, forgotten, restored.
    xgrad::set_gemm_provider("auto");
    CHECK(xgrad::gemm_provider().find("chosen per shape by timing ") == 0);
    (void)xgrad::matmul(a, b);
    const xgrad::PrepackedGemm<double> few(2, 30, 20, std::vector<double>(600, 0.5).data(), true, 20, 30);
    const std::string saved = xgrad::saved_gemm_choices();
    CHECK(saved.find("f 24 24 40 0 0 0 ") == 0);
    CHECK(saved.find(";d 2 30 20 0 1 1 ") != std::string::npos);
    xgrad::set_gemm_provider("auto");
    CHECK(xgrad::saved_gemm_choices().empty());
    xgrad::restore_gemm_choices(saved);
    CHECK(xgrad::saved_gemm_choices() == saved);
    CHECK(xgrad::gemm_choices().find("(restored)") != std::string::npos);
    // Choices this build cannot make are left to be measured; entries that are not choices are refused.
    xgrad::set_gemm_provider("auto");
    xgrad::restore_gemm_choices("f 3 4 5 0 0 0 1 no-such-provider 1;d 3 4 5 0 0 1 1 small-rows 1");
    CHECK(xgrad::saved_gemm_choices() == "d 3 4 5 0 0 1 1 small-rows 1");
    CHECK_THROWS_WITH_AS(xgrad::restore_gemm_choices("f 3 4 5 0 0 0 1 openblas 1;f 3 4 x"),
                         "restore_gemm_choices: entry 1 ('f 3 4 x') is not a saved choice", std::invalid_argument);
    CHECK_THROWS_AS(xgrad::restore_gemm_choices("f 3 4 5 0 2 0 1 openblas 1"), std::invalid_argument);
    CHECK_THROWS_AS(xgrad::restore_gemm_choices("f 3 4 5 0 0 0 1 openblas 1 extra"), std::invalid_argument);
}

TEST_CASE_TEMPLATE("PrepackedGemm equals the plain product on every provider: few rows, many rows, either layout of B"
                       * doctest::test_suite("slow"),
                   T, float, double) {
    // Each provider pinned in turn (one that cannot run a shape leaves it to the others), then the
    // choice by timing. Each product runs twice, on new A and C.
    const T tolerance = std::is_same_v<T, float> ? T(1e-4) : T(1e-12);
    xgrad::Generator gen(3);
    EveryProvider every;
    for (const std::string& provider : every.names) {
        CAPTURE(provider);
        xgrad::set_gemm_provider(provider);
        for (std::size_t m : {1, 3, 4, 5, 33, 64, 70})
            for (std::size_t n : {1, 7, 100, 130})
                for (std::size_t k : {1, 9, 100, 300, 600})  // 300, 600: more than one slice of the panel kernel (AVX2, baseline)
                    for (bool trans_b : {false, true})
                        for (bool accumulate : {false, true}) {
                            CAPTURE(m);
                            CAPTURE(n);
                            CAPTURE(k);
                            CAPTURE(trans_b);
                            CAPTURE(accumulate);
                            const std::size_t lda = k + 3, ldc = n + 2;  // rows further apart than they need be
                            const Tensor<T> a = xgrad::uniform<T>({m, lda}, -1, 1, gen);
                            const Tensor<T> b = xgrad::uniform<T>({n * k}, -1, 1, gen);
                            const Tensor<T> c0 = xgrad::uniform<T>({m, ldc}, -1, 1, gen);
                            Tensor<T> c = c0;
                            Tensor<T> b_copy = b;
                            const xgrad::PrepackedGemm<T> product(m, n, k, b_copy.data(), trans_b, lda, ldc);
                            b_copy.fill(T(0));  // B was copied: this must not show
                            Tensor<T> scratch_a = xgrad::uniform<T>({m, lda}, -1, 1, gen), scratch_c = c0;
                            product(scratch_a.data(), scratch_c.data(), accumulate);  // a first product on other buffers
                            product(a.data(), c.data(), accumulate);
                            T worst = 0, gaps_changed = 0;
                            for (std::size_t i = 0; i < m; ++i) {
                                for (std::size_t j = 0; j < n; ++j) {
                                    double expected = accumulate ? double(c0(i, j)) : 0.0;
                                    for (std::size_t p = 0; p < k; ++p)
                                        expected += double(a(i, p)) * double(trans_b ? b(j * k + p) : b(p * n + j));
                                    worst = std::max(worst, T(std::abs(double(c(i, j)) - expected)));
                                }
                                for (std::size_t j = n; j < ldc; ++j) gaps_changed += c(i, j) != c0(i, j);
                            }
                            CHECK(worst < tolerance * T(k));
                            CHECK(gaps_changed == 0);
                        }
    }
    T b[4] = {};
    CHECK_THROWS_WITH_AS(xgrad::PrepackedGemm<T>(2, 2, 2, b, false, 1, 2),
                         "PrepackedGemm: 2 x 2 x 2 with lda 1 and ldc 2 (need lda >= k, ldc >= n)", xgrad::ShapeError);
}

namespace {
// Whether /proc/cpuinfo's first "flags" line lists every one of these.
bool cpuinfo_has(std::initializer_list<std::string_view> wanted) {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line) && !line.starts_with("flags")) {
    }
    REQUIRE(line.starts_with("flags"));
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags{std::istream_iterator<std::string>(words), {}};
    for (std::string_view flag : wanted)
        if (!flags.contains(std::string(flag))) return false;
    return true;
}
}  // namespace

TEST_CASE("cpu_isa: the kernels run the widest instruction set the CPU has, capped by XGRAD_ISA") {
    // Every suite run checks the CPU's own answer, as the kernel reports it (it hides what the
    // operating system does not support); CTest runs this program again with XGRAD_ISA=baseline.
    const xgrad::Isa widest = cpuinfo_has({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}) &&
                                      cpuinfo_has({"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"})
                                  ? xgrad::Isa::avx512
                              : cpuinfo_has({"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"})
                                  ? xgrad::Isa::avx2
                                  : xgrad::Isa::baseline;
    xgrad::Isa expected = widest;
    if (const char* cap = std::getenv("XGRAD_ISA")) {
        for (xgrad::Isa isa : {xgrad::Isa::baseline, xgrad::Isa::avx2, xgrad::Isa::avx512})
            if (xgrad::isa_name(isa) == cap) expected = std::min(isa, widest);
    }
    CAPTURE(xgrad::isa_name(widest));
    CHECK(xgrad::cpu_isa() == expected);
    CHECK(xgrad::isa_name(xgrad::Isa::avx512) == "avx512");
}

TEST_CASE("printing") {
    CHECK(xgrad::format_tensor(Tensor<double>{{1, 2}, {3, 4}}, 1) == "tensor([[1.0, 2.0],\n        [3.0, 4.0]], shape=(2, 2))");
    CHECK(xgrad::format_tensor(Tensor<float>(2.5f), 2) == "tensor(2.50, shape=())");
    CHECK(xgrad::format_tensor(Tensor<double>(xt::arange<double>(10)), 0, 2) ==
          "tensor([0, 1, ..., 8, 9], shape=(10,))");
    CHECK(xgrad::format_tensor(Tensor<double>(xt::arange<double>(4)), 0, 0) == "tensor([0, 1, 2, 3], shape=(4,))");
}
