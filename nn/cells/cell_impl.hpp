/// @file
/// What the built-in cells' .cpp files share: the pick of their rows' copy for this CPU (the rows live
/// in each cell's _rows.cpp, compiled once per instruction set: tensor/isa_kernels.hpp), and the
/// instantiation of a cell for float and double.
#pragma once

#include "../../tensor/isa_kernels.hpp"

/// At the end of a built-in cell's .cpp: its graph step and rows, compiled for float and double.
/// Expands to explicit instantiations, so it must be used inside namespace xgrad::nn::cells.
#define XGRAD_INSTANTIATE_CELL(Cell)                                                         \
    template std::vector<Var<float>> Cell::step<float>(const CellStep<float>&) const;       \
    template void Cell::forward_row<float>(const RowForward<float>&) const;                 \
    template void Cell::backward_row<float>(const RowBackward<float>&) const;               \
    template std::vector<Var<double>> Cell::step<double>(const CellStep<double>&) const;    \
    template void Cell::forward_row<double>(const RowForward<double>&) const;               \
    template void Cell::backward_row<double>(const RowBackward<double>&) const;
