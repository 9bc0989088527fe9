/// @file
/// The fused recurrent kernel (nn/rnn_kernel.hpp) as one op of the autograd graph, and the graph
/// values the recurrent layers return.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../autograd/graph.hpp"
#include "rnn_kernel.hpp"

namespace xgrad::nn {

/// What a recurrent layer returns: the output (T, B, directions * H) and each state at each
/// sequence's last step, (num_layers * directions, B, H), h_n first.
template <class T>
struct RecurrentOutput {
    /// (T, B, directions * H), or (B, T, directions * H) with batch_first; zero past each sequence's length.
    Var<T> output;
    /// One per cell state (LSTM: h_n, c_n), each (num_layers * directions, B, H).
    std::vector<Var<T>> states;
    /// states[0]; std::out_of_range if there are none.
    const Var<T>& h_n() const { return states.at(0); }
};

/// What nn::RNN and nn::GRU return: (output, h_n).
template <class T>
struct RNNOutput {
    /// (T, B, directions * H), or batch-first; zero past each sequence's length.
    Var<T> output;
    /// (num_layers * directions, B, H): each sequence's state at its last step.
    Var<T> h_n;
};

/// What nn::LSTM returns: (output, h_n, c_n).
template <class T>
struct LSTMOutput {
    /// (T, B, directions * H), or batch-first; zero past each sequence's length.
    Var<T> output;
    /// (num_layers * directions, B, H): each sequence's hidden state at its last step.
    Var<T> h_n;
    /// (num_layers * directions, B, H): the cell state alike; empty for one-state cells (RecurrentBase::forward_any).
    Var<T> c_n;
};

/// The kernel as one graph op over `cell`. params: per (layer, direction), in layer_parameters()
/// order. initial_states: empty, or one per cell state, each possibly an empty Var (zeros); input
/// may be empty when `ids` gives the input as one-hot indices. If `hidden_grad_norms` is given,
/// backward stores RNNGrads::hidden_grad_norms there.
template <class T>
RecurrentOutput<T> rnn_fused(std::shared_ptr<const FusedCell<T>> cell, const RNNSpec& spec, const Var<T>& input,
                             const std::vector<Var<T>>& initial_states, const std::vector<Var<T>>& params,
                             const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                             std::shared_ptr<Tensor<T>> hidden_grad_norms = nullptr, const Indices* ids = nullptr);

}  // namespace xgrad::nn
