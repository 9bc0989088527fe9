/// @file
/// Activation checkpointing for any block of ops, as torch.utils.checkpoint does: forward runs the
/// block without recording it (only its outputs are kept), backward runs it again on a fresh tape
/// and backpropagates through that. Memory for time: what the block's ops would save for backward
/// exists only while its backward runs.
///
/// @code
///   auto step = [&](const std::vector<xgrad::Var<float>>& in) { return std::vector{cell.forward(in[0], in[1])}; };
///   xgrad::Var<float> h = xgrad::checkpoint<float>(step, {x_t, h}, {&dropout_gen})[0];
/// @endcode
///
/// The block may use any ops and modules: the parameters it reads get their gradients from the
/// recomputation, whether or not its inputs need gradients. Generators it draws from (dropout) are
/// given in `generators`: their state is saved before the first run and restored for the second,
/// so the recomputation draws the same masks. The block must be a function of its inputs, its
/// parameters and those generators only.
#pragma once

#include <functional>
#include <vector>

#include "../tensor/random.hpp"
#include "graph.hpp"

namespace xgrad {

/// The block that checkpoint() runs: its outputs from its inputs (at least one output). It is
/// called twice, so it must not depend on anything but its inputs, parameters and the listed generators.
template <class T>
using CheckpointFn = std::function<std::vector<Var<T>>(const std::vector<Var<T>>&)>;

/// Runs fn(inputs) and returns its outputs, recorded as one node whose backward recomputes them.
/// Inputs must be on one tape; fn must return at least one output. Throws GraphError for no
/// inputs, inputs on two graphs, no outputs, or a recomputation whose outputs differ in number or
/// shape from the first run's; std::invalid_argument for a null generator.
template <class T>
std::vector<Var<T>> checkpoint(const CheckpointFn<T>& fn, const std::vector<Var<T>>& inputs,
                               const std::vector<Generator*>& generators = {});

}  // namespace xgrad
