/// @file
/// Printing tensors through fmt, in PyTorch's style:
///
/// @code
///   fmt::print("{}\n", xgrad::format_tensor(t));   // tensor([[1.0000, 2.0000], ...], shape=(2, 2))
/// @endcode
#pragma once

#include <string>

#include "tensor.hpp"

namespace xgrad {

/// The tensor as PyTorch prints it, with `precision` digits after the point and its shape.
/// Long dimensions are elided with "..." after `edge_items` entries at each end (0: print everything).
template <class T>
std::string format_tensor(const Tensor<T>& t, int precision = 4, std::size_t edge_items = 3);

}  // namespace xgrad
