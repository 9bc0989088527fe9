// The fused recurrent kernel (nn/rnn_kernel.hpp) as one op of the autograd graph, and the graph
// values the recurrent layers return.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../autograd/graph.hpp"
#include "rnn_kernel.hpp"

namespace xgrad::nn {

// What nn::RNN and nn::GRU return, as graph values: (output, h_n).
template <class T>
struct RNNOutput {
    Var<T> output;
    Var<T> h_n;
};

// What nn::LSTM and rnn_fused return: (output, h_n, c_n); c_n stays empty for RNN and GRU.
template <class T>
struct LSTMOutput {
    Var<T> output;
    Var<T> h_n;
    Var<T> c_n;
};

// The kernel as one graph op. params: per (layer, direction) weight_ih, weight_hh, then bias_ih,
// bias_hh with bias. h0 and c0 may be empty Vars; so may input when `ids` gives the input as
// one-hot indices. If `hidden_grad_norms` is given, backward stores RNNGrads::hidden_grad_norms there.
template <class T>
LSTMOutput<T> rnn_fused(const RNNSpec& spec, const Var<T>& input, const Var<T>& h0, const Var<T>& c0,
                        const std::vector<Var<T>>& params, const std::vector<std::int64_t>& lengths,
                        std::vector<Tensor<T>> dropout_masks, std::shared_ptr<Tensor<T>> hidden_grad_norms = nullptr,
                        const Indices* ids = nullptr);

}  // namespace xgrad::nn
