/// @file
/// XGRAD_FOR_FLOAT_AND_DOUBLE(LIST): the explicit instantiations a .cpp file lists once, in a macro
/// LIST(T) of its own, compiled for float and double, so that headers declare templates without
/// their xtensor-heavy bodies:
///
/// @code
///   #define OPS_SHAPE_INSTANCES(T) template Var<T> reshape(const Var<T>&, const std::vector<std::ptrdiff_t>&);
///   XGRAD_FOR_FLOAT_AND_DOUBLE(OPS_SHAPE_INSTANCES)
/// @endcode
#pragma once

/// Expands LIST(float) then LIST(double).
#define XGRAD_FOR_FLOAT_AND_DOUBLE(LIST) LIST(float) LIST(double)
