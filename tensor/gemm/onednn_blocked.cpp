// oneDNN's matmul primitive with B reordered once into the blocked weights format its kernels pick
// (float, products against one B only). Its brgemm kernels beat the sgemm on the plain layout at
// many rows where the CPU has AVX-512, and lose where it has AVX2 (on a Zen 3, measured in commit
// ffe6306): the measurement in choice.cpp decides.
#include <stdexcept>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

#include "provider.hpp"

namespace xgrad::blas {

namespace {
dnnl::engine& cpu_engine() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

dnnl::stream& cpu_stream() {
    thread_local dnnl::stream stream(cpu_engine());
    return stream;
}

// Two primitives, C = A·B and C += A·B (a sum post-op). Primitive creation hits oneDNN's primitive
// cache after the first time a shape is seen (~4 µs); the reorder of B is the real cost, once per
// object. Not for concurrent use: the memory objects of A and C are reused across calls.
class BlockedProduct final : public Packed<float> {
  public:
    BlockedProduct(std::size_t m, std::size_t n, std::size_t k, const float* b, bool trans_b, std::size_t lda,
                   std::size_t ldc, int threads)
        : threads_(threads) {
        using dnnl::memory;
        const auto d = [](std::size_t v) { return static_cast<memory::dim>(v); };
        const ScopedThreads scoped(threads);  // the kernels' blocking is chosen for the thread count
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
        set_ = dnnl::matmul(plain);
        add_ = dnnl::matmul(summed);
        weights_ = memory(plain.weights_desc(), engine);
        memory source(given, engine, const_cast<float*>(b));  // read only, by the reorder
        dnnl::reorder(source, weights_).execute(cpu_stream(), source, weights_);
        a_ = memory(a_desc, engine, DNNL_MEMORY_NONE);
        c_ = memory(c_desc, engine, DNNL_MEMORY_NONE);
        arguments_ = {{DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, weights_}, {DNNL_ARG_DST, c_}};
    }

    void run(const float* a, float* c, bool accumulate) const override {
        const ScopedThreads scoped(threads_);
        a_.set_data_handle(const_cast<float*>(a));  // read only: the matmul's source
        c_.set_data_handle(c);
        (accumulate ? add_ : set_).execute(cpu_stream(), arguments_);
    }

  private:
    int threads_;
    dnnl::matmul set_, add_;
    dnnl::memory weights_;
    mutable dnnl::memory a_, c_;
    std::unordered_map<int, dnnl::memory> arguments_;  // built once: a map per call cost ~6% at 32 x 256 x 256
};

class OnednnBlocked final : public Provider<float> {
  public:
    std::string_view name() const override { return "onednn-blocked"; }
    std::string description() const override { return "oneDNN matmul on blocked weights"; }
    bool runs(const Shape& shape) const override { return shape.packed && shape.m > 0 && shape.n > 0 && shape.k > 0; }
    bool sets_threads() const override { return true; }
    void multiply(const Product<float>&, int) const override {
        throw std::logic_error("gemm: onednn-blocked runs products against a B laid out once only");
    }
    std::unique_ptr<Packed<float>> pack(std::size_t m, std::size_t n, std::size_t k, const float* b, bool trans_b,
                                        std::size_t lda, std::size_t ldc, int threads) const override {
        try {
            return std::make_unique<BlockedProduct>(m, n, k, b, trans_b, lda, ldc, threads);
        } catch (const dnnl::error&) {  // a shape or weight format the matmul does not take
            return nullptr;
        }
    }
};
}  // namespace

const Provider<float>* onednn_blocked() {
    static const OnednnBlocked provider;
    return &provider;
}

}  // namespace xgrad::blas
