// Manual versus autograd gradients, for users: an RNN (or LSTM, GRU) + Linear + cross-entropy model on random
// data, its gradients from the handwritten-BPTT kernel, from generic graph backprop, and from
// central differences, compared parameter by parameter.
//
//   xgrad::nn::RNNVerifyOptions o;
//   o.num_layers = 2;
//   auto report = xgrad::nn::verify_rnn_gradients(o);
//   for (auto& p : report.parameters) fmt::print("{} {:.2e}\n", p.name, p.fused_vs_graph.max_abs);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rnn_kernel.hpp"

namespace xgrad::nn {

struct RNNVerifyOptions {
    RecurrentMode mode = RecurrentMode::rnn;
    std::size_t input_size = 5, hidden_size = 8, num_layers = 1, steps = 6, batch = 3, classes = 5;
    bool bidirectional = false, bias = true;
    Nonlinearity nonlinearity = Nonlinearity::tanh;  // RNN only
    std::vector<std::int64_t> lengths;  // empty: every sequence runs all steps
    bool loss_at_last_step_only = false;  // makes vanishing or exploding gradients easy to see
    double recurrent_scale = 1.0;         // multiplies W_hh after the usual initialization
    double forget_bias = 0.0;             // LSTM only: added to the forget gates' bias_ih (a common init)
    std::uint64_t seed = 1;
    bool finite_differences = true;       // costs two forward passes per parameter entry
    // Bars: the kernel agrees with the graph within `agreement`; autograd agrees with finite
    // differences entry by entry within atol + rtol * |numeric| (PyTorch's gradcheck rule).
    double agreement = 1e-10, atol = 1e-5, rtol = 1e-3, eps = 1e-6;
};

struct GradientComparison {
    double max_abs = 0;  // max |a - b|
    double max_rel = 0;  // max |a - b| / max |b|, over the whole tensor
    bool passed = true;
};

struct ParameterCheck {
    std::string name;                    // "rnn.weight_hh_l0", "fc.bias", or "input"
    GradientComparison fused_vs_graph;   // handwritten BPTT against autograd
    GradientComparison graph_vs_numeric; // autograd against central differences (if run)
};

struct RNNVerifyReport {
    std::vector<ParameterCheck> parameters;
    double loss = 0;
    // ||∂L/∂h_t|| per (layer * directions + direction, t), from each implementation.
    Tensor<double> hidden_grad_norms_graph, hidden_grad_norms_fused;
    bool passed = true;
};

RNNVerifyReport verify_rnn_gradients(const RNNVerifyOptions& options);

}  // namespace xgrad::nn
