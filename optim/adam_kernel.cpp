// Adam's update (adam_kernel.hpp), compiled once per instruction set (tensor/isa_kernels.hpp).
#include "adam_kernel.hpp"

#include "../tensor/simd.hpp"

namespace xgrad::optim::XGRAD_ISA_NAMESPACE {

template <class T>
void adam_update(T* p, const T* grad, T* m, T* v, T* v_max, std::size_t n, const AdamCoefficients<T>& k) {
    simd::simd_for<T>(n, [&](auto lane, std::size_t i) {  // SIMD batches: the same operations, in the same order
        using V = decltype(lane);
        V g = simd::load<V>(grad + i), w = simd::load<V>(p + i);
        if (k.decoupled) {
            w = w * V(k.decay);
        } else {
            g = g + V(k.wd) * w;
        }
        const V m_k = V(k.b1) * simd::load<V>(m + i) + V(1 - k.b1) * g;
        const V v_k = V(k.b2) * simd::load<V>(v + i) + V(1 - k.b2) * g * g;
        V second = v_k;
        if (k.amsgrad) {
            second = simd::max(simd::load<V>(v_max + i), v_k);
            simd::store(v_max + i, second);
        }
        simd::store(m + i, m_k);
        simd::store(v + i, v_k);
        simd::store(p + i, w - V(k.step_size) * m_k / (simd::sqrt(second) / V(k.root2) + V(k.eps)));
    });
}

template void adam_update<float>(float*, const float*, float*, float*, float*, std::size_t, const AdamCoefficients<float>&);
template void adam_update<double>(double*, const double*, double*, double*, double*, std::size_t, const AdamCoefficients<double>&);

}  // namespace xgrad::optim::XGRAD_ISA_NAMESPACE
