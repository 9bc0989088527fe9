/// @file
/// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
///
/// @code
///   double norm = xgrad::nn::clip_grad_norm(model.parameters(), 5.0);   // the norm before clipping
/// @endcode
#pragma once

#include <limits>
#include <vector>

#include "../autograd/parameter.hpp"

namespace xgrad::nn {

/// Scales every gradient by max_norm / (total_norm + 1e-6) when that is below 1, where total_norm
/// is the norm of all gradients together (norm_type 2, or infinity for the largest magnitude).
/// Returns total_norm. A non-finite total_norm is returned without touching the gradients, so the
/// caller can see it and skip the step. max_norm must be positive and norm_type 2 or +infinity
/// (std::invalid_argument).
template <class T>
double clip_grad_norm(const std::vector<Parameter<T>>& parameters, double max_norm, double norm_type = 2.0);

/// Clamps every gradient entry to [-clip_value, clip_value].
/// A negative clip_value throws std::invalid_argument.
template <class T>
void clip_grad_value(const std::vector<Parameter<T>>& parameters, double clip_value);

}  // namespace xgrad::nn
