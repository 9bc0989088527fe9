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
}  // namespace

// y = a b;   da += dy bᵀ,  db += aᵀ dy   (per batch for 3-D; over all rows for (b,m,k) x (k,n))
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
    Tensor<T> y = matmul(a.value(), b.value());  // checks shapes, naming "matmul"
    return a.tape().record(std::move(y), {a, b}, [](BackwardContext<T>& c) {
        const Tensor<T>& av = c.input(0);
        const Tensor<T>& bv = c.input(1);
        const T* dy = c.output_grad().data();
        const std::size_t ra = av.dimension(), rb = bv.dimension();
        const std::size_t m = av.shape(ra - 2), k = av.shape(ra - 1), n = bv.shape(rb - 1);
        // (b,m,k) x (k,n) is one (b*m, k) x (k, n) product; 2-D is the same with one batch.
        const bool flat = rb == 2;
        const std::size_t batches = flat ? 1 : av.shape(0);
        const std::size_t rows = flat ? av.size() / k : m;
        bool fresh = false;
        if (c.needs_grad(0)) {
            T* da = c.input_grad(0, &fresh).data();
            for (std::size_t i = 0; i < batches; ++i) {
                gemm_raw<T>(false, true, rows, k, n, T(1), dy + i * rows * n, n, bv.data() + i * k * n, n,
                            beta_for<T>(fresh), da + i * rows * k, k);
            }
        }
        if (c.needs_grad(1)) {
            T* db = c.input_grad(1, &fresh).data();
            for (std::size_t i = 0; i < batches; ++i) {
                gemm_raw<T>(true, false, k, n, rows, T(1), av.data() + i * rows * k, k, dy + i * rows * n, n,
                            beta_for<T>(fresh), db + i * k * n, n);
            }
        }
    });
}

template Var<float> matmul(const Var<float>&, const Var<float>&);
template Var<double> matmul(const Var<double>&, const Var<double>&);

}  // namespace xgrad
