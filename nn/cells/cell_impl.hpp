// What the built-in cells' .cpp files share: activations over n contiguous values in place, a SIMD
// batch at a time, for the fused rows (scalar libm calls would cost the kernel as much as its
// GEMMs), and the instantiation of a cell for float and double.
#pragma once

#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace xgrad::nn::rows {

template <class T>
void tanh_inplace(T* x, std::size_t n) {
    using batch = xsimd::batch<T>;
    std::size_t i = 0;
    for (; i + batch::size <= n; i += batch::size) xsimd::tanh(batch::load_unaligned(x + i)).store_unaligned(x + i);
    for (; i < n; ++i) x[i] = std::tanh(x[i]);
}

template <class T>
void sigmoid_inplace(T* x, std::size_t n) {
    using batch = xsimd::batch<T>;
    std::size_t i = 0;
    for (; i + batch::size <= n; i += batch::size) {
        (batch(T(1)) / (batch(T(1)) + xsimd::exp(-batch::load_unaligned(x + i)))).store_unaligned(x + i);
    }
    for (; i < n; ++i) x[i] = T(1) / (T(1) + std::exp(-x[i]));
}

}  // namespace xgrad::nn::rows

// At the end of a built-in cell's .cpp: its graph step and rows, compiled for float and double.
#define XGRAD_INSTANTIATE_CELL(Cell)                                                         \
    template std::vector<Var<float>> Cell::step<float>(const CellStep<float>&) const;       \
    template void Cell::forward_row<float>(const RowForward<float>&) const;                 \
    template void Cell::backward_row<float>(const RowBackward<float>&) const;               \
    template std::vector<Var<double>> Cell::step<double>(const CellStep<double>&) const;    \
    template void Cell::forward_row<double>(const RowForward<double>&) const;               \
    template void Cell::backward_row<double>(const RowBackward<double>&) const;
