/// @file
/// The fused recurrent kernel (nn/recurrent_kernel.hpp) as one op of the autograd graph, and what a
/// recurrent layer returns.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../autograd/graph.hpp"
#include "fused_cell.hpp"
#include "recurrent_layout.hpp"

namespace xgrad::nn {

/// What a recurrent layer returns: the output and each state at each sequence's last step.
template <class T>
struct RecurrentOutput {
    /// (T, B, directions * H), or (B, T, directions * H) with batch_first; zero past each sequence's length.
    Var<T> output;
    /// (num_layers * directions, B, H): the hidden state at each sequence's last step, as nn::LSTM's and nn::GRU's h_n.
    Var<T> h_n;
    /// Every state of the cell alike, h_n first (LSTM: h_n, c_n).
    std::vector<Var<T>> states;
};

/// The kernel as one graph op over `cell`. params: per (layer, direction), its parameters. initial_states: empty, or one per cell state, each possibly an empty Var (zeros); input
/// may be empty when `ids` gives the input as one-hot indices. If `hidden_grad_norms` is given,
/// backward stores RecurrentGrads::hidden_grad_norms there.
template <class T>
RecurrentOutput<T> recurrent_fused(std::shared_ptr<const FusedCell<T>> cell, const RecurrentSpec& spec, const Var<T>& input,
                             const std::vector<Var<T>>& initial_states, const std::vector<DirectionParameters<Var<T>>>& params,
                             const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                             std::shared_ptr<Tensor<T>> hidden_grad_norms = nullptr, const Indices* ids = nullptr);

}  // namespace xgrad::nn
