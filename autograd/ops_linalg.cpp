// Matrix products through BLAS; gradients are GEMMs accumulated straight into the inputs'
// gradient buffers (beta = 1), or written into fresh ones (beta = 0).
#include <fmt/format.h>

#include "../tensor/linalg.hpp"
#include "ops.hpp"

namespace xgrad {

namespace {
template <class T>
T beta_for(bool fresh) {
    return fresh ? T(0) : T(1);
}

// Products of fewer rows than this against a leaf weight use the graph's laid-out copy of it
// (Tape::layout): a recurrent weight's per-step products, where re-packing the weight inside every
// GEMM call is a large share of a small product's time (measured in commit 0bcd151).
constexpr std::size_t laid_out_below_rows = 256;
}  // namespace

// y = a b;   da += dy bᵀ,  db += aᵀ dy   (per batch for 3-D; over all rows for (b,m,k) x (k,n))
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
    Tensor<T> y = matmul(a.value(), b.value());  // checks shapes, naming "matmul"
    return a.tape().record("matmul", std::move(y), {a, b}, [](BackwardContext<T>& c) {
        const Shape as = c.input_shape(0), bs = c.input_shape(1);
        const T* dy = c.output_grad().data();
        const std::size_t ra = as.size(), rb = bs.size();
        const std::size_t m = as[ra - 2], k = as[ra - 1], n = bs[rb - 1];
        // (b,m,k) x (k,n) is one (b*m, k) x (k, n) product; 2-D is the same with one batch.
        const bool flat = rb == 2;
        const std::size_t batches = flat ? 1 : as[0];
        const std::size_t rows = flat && ra == 3 ? as[0] * m : m;
        bool fresh = false;
        if (c.needs_grad(0)) {
            const T* bv = c.input(1).data();
            T* da = c.input_grad(0, &fresh).data();
            for (std::size_t i = 0; i < batches; ++i) {
                gemm_raw<T>(false, true, rows, k, n, T(1), dy + i * rows * n, n, bv + i * k * n, n,
                            beta_for<T>(fresh), da + i * rows * k, k);
            }
        }
        if (c.needs_grad(1)) {
            const T* av = c.input(0).data();
            T* db = c.input_grad(1, &fresh).data();
            for (std::size_t i = 0; i < batches; ++i) {
                gemm_raw<T>(true, false, k, n, rows, T(1), av + i * rows * k, k, dy + i * rows * n, n,
                            beta_for<T>(fresh), db + i * k * n, n);
            }
        }
    }, Saves::input(1).when(a.requires_grad()) | Saves::input(0).when(b.requires_grad()));
}

// y = x Wᵀ + b over all rows of x;   dx += dy W,  dW += dyᵀ x,  db += Σ_rows dy
template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& weight, const Var<T>& bias) {
    const Shape xs = x.shape(), ws = weight.shape();
    if (xs.empty() || ws.size() != 2 || ws[1] != xs.back() ||
        (bias.defined() && bias.shape() != Shape{ws[0]})) {
        throw ShapeError(fmt::format("linear: input {} does not fit weight {} and bias {} (need input (..., in), "
                                     "weight (out, in), bias (out,))", shape_str(xs), shape_str(ws),
                                     bias.defined() ? shape_str(bias.shape()) : std::string("none")));
    }
    const std::size_t in = ws[1], out = ws[0];
    const std::size_t rows = numel(Shape(xs.begin(), xs.end() - 1));
    Shape ys = xs;
    ys.back() = out;
    Tensor<T> y = Tensor<T>::from_shape(ys);
    if (bias.defined()) {
        for (std::size_t r = 0; r < rows; ++r) std::copy_n(bias.value().data(), out, y.data() + r * out);
    }
    const PrepackedGemm<T>* laid_out = rows < laid_out_below_rows ? x.tape().layout(weight, rows, true) : nullptr;
    if (laid_out) {
        (*laid_out)(x.value().data(), y.data(), bias.defined());
    } else {
        gemm_raw<T>(false, true, rows, out, in, T(1), x.value().data(), in, weight.value().data(), in,
                    beta_for<T>(!bias.defined()), y.data(), out);
    }
    auto backward = [rows, in, out](BackwardContext<T>& c) {
        const T* dy = c.output_grad().data();
        bool fresh = false;
        if (c.needs_grad(0)) {
            T* dx = c.input_grad(0, &fresh).data();
            const PrepackedGemm<T>* w = rows < laid_out_below_rows ? c.input_layout(1, rows, false) : nullptr;
            if (w) {
                (*w)(dy, dx, !fresh);
            } else {
                gemm_raw<T>(false, false, rows, in, out, T(1), dy, out, c.input(1).data(), in, beta_for<T>(fresh), dx, in);
            }
        }
        if (c.needs_grad(1)) {
            T* dw = c.input_grad(1, &fresh).data();
            gemm_raw<T>(true, false, out, in, rows, T(1), dy, out, c.input(0).data(), in, beta_for<T>(fresh), dw, in);
        }
        if (c.num_inputs() == 3 && c.needs_grad(2)) {
            T* db = c.input_grad(2).data();
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t o = 0; o < out; ++o) db[o] += dy[r * out + o];
        }
    };
    const Saves saves = Saves::input(1).when(x.requires_grad()) | Saves::input(0).when(weight.requires_grad());
    if (bias.defined()) return x.tape().record("linear", std::move(y), {x, weight, bias}, std::move(backward), saves);
    return x.tape().record("linear", std::move(y), {x, weight}, std::move(backward), saves);
}

template Var<float> linear(const Var<float>&, const Var<float>&, const Var<float>&);
template Var<double> linear(const Var<double>&, const Var<double>&, const Var<double>&);
template Var<float> matmul(const Var<float>&, const Var<float>&);
template Var<double> matmul(const Var<double>&, const Var<double>&);

}  // namespace xgrad
