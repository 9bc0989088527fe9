/// @file
/// For a built-in cell's _rows.cpp, compiled once per instruction set: the SIMD loops
/// (tensor/simd.hpp; scalar libm calls would cost the kernel as much as its GEMMs) and the
/// instantiation of its rows for float and double.
#pragma once

#include "../../tensor/simd.hpp"
#include "../fused_cell.hpp"

/// At the end of a cell's _rows.cpp, inside namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE.
#define XGRAD_INSTANTIATE_CELL_ROWS(prefix)                                       \
    template void prefix##_forward_row<float>(const RowForward<float>&);          \
    template void prefix##_backward_row<float>(const RowBackward<float>&);        \
    template void prefix##_forward_row<double>(const RowForward<double>&);        \
    template void prefix##_backward_row<double>(const RowBackward<double>&);
