// The softmax's rows for cross_entropy (ops_loss.cpp), compiled once per instruction set
// (tensor/isa_kernels.hpp).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include <xsimd/xsimd.hpp>

namespace xgrad::XGRAD_ISA_NAMESPACE {

// The largest of row[0, n).
template <class T>
T row_max(const T* row, std::size_t n) {
    using batch = xsimd::batch<T>;
    T m = -std::numeric_limits<T>::infinity();
    std::size_t k = 0;
    if (n >= batch::size) {
        batch acc = batch::load_unaligned(row);
        for (k = batch::size; k + batch::size <= n; k += batch::size) acc = xsimd::max(acc, batch::load_unaligned(row + k));
        alignas(64) T lanes[batch::size];
        acc.store_unaligned(lanes);
        m = *std::max_element(lanes, lanes + batch::size);
    }
    for (; k < n; ++k) m = std::max(m, row[k]);
    return m;
}

// out[k] = exp(row[k] - shift); returns their sum.
template <class T>
T exp_shifted(const T* row, T shift, std::size_t n, T* out) {
    using batch = xsimd::batch<T>;
    batch acc(T(0));
    std::size_t k = 0;
    for (; k + batch::size <= n; k += batch::size) {
        const batch e = xsimd::exp(batch::load_unaligned(row + k) - batch(shift));
        e.store_unaligned(out + k);
        acc += e;
    }
    T sum = xsimd::hadd(acc);
    for (; k < n; ++k) sum += out[k] = std::exp(row[k] - shift);
    return sum;
}

template float row_max<float>(const float*, std::size_t);
template double row_max<double>(const double*, std::size_t);
template float exp_shifted<float>(const float*, float, std::size_t, float*);
template double exp_shifted<double>(const double*, double, std::size_t, double*);

}  // namespace xgrad::XGRAD_ISA_NAMESPACE
