/// @file
/// Manual versus autograd gradients, for users: a recurrent layer (any cell: a built-in one by
/// name, or your own) + Linear + cross-entropy model on random data, its gradients from the cell's
/// handwritten-BPTT rows in the fused kernel, from generic graph backprop over the cell's graph
/// step, and from central differences, compared parameter by parameter.
///
/// @code
///   xgrad::nn::RecurrentVerifyOptions o;
///   o.cell = "lstm";
///   o.num_layers = 2;
///   auto report = xgrad::nn::verify_recurrent_gradients(o);
///   fmt::print("{}", xgrad::nn::format_report(report, o));
///   auto mine = xgrad::nn::verify_cell_gradients(MyCell{}, o);   // a cell of your own (nn/cell.hpp)
/// @endcode
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cell.hpp"

namespace xgrad::nn {

/// The model, the data and the bars of verify_recurrent_gradients(). All in double.
struct RecurrentVerifyOptions {
    std::string cell = "rnn";  ///< a built-in cell (recurrent_cell_names()); ignored by verify_cell_gradients
    /// The model's and the random data's sizes: the layer's, T steps of B sequences, and the
    /// classes of the Linear head and the targets.
    ///@{
    std::size_t input_size = 5, hidden_size = 8, num_layers = 1, steps = 6, batch = 3, classes = 5;
    ///@}
    /// The layer's structure, as RecurrentOptions's.
    ///@{
    bool bidirectional = false, bias = true;
    ///@}
    Nonlinearity nonlinearity = Nonlinearity::tanh;  ///< RNN only
    std::vector<std::int64_t> lengths;  ///< empty: every sequence runs all steps
    bool loss_at_last_step_only = false;  ///< makes vanishing or exploding gradients easy to see
    double recurrent_scale = 1.0;         ///< multiplies W_hh after the usual initialization
    double forget_bias = 0.0;             ///< LSTM only: added to the forget gates' bias_ih (a common init)
    /// Seeds the weights, the input and the targets: the same seed, the same check.
    std::uint64_t seed = 1;
    bool finite_differences = true;       ///< costs two forward passes per parameter entry
    /// Bars: the kernel agrees with the graph within `agreement`; autograd agrees with finite
    /// differences entry by entry within atol + rtol * |numeric| (PyTorch's gradcheck rule).
    /// eps is the central differences' step.
    ///@{
    double agreement = 1e-10, atol = 1e-5, rtol = 1e-3, eps = 1e-6;
    ///@}
};

/// Two gradients of one tensor, compared entry by entry.
struct GradientComparison {
    double max_abs = 0;  ///< max |a - b|
    double max_rel = 0;  ///< max |a - b| / max |b|, over the whole tensor
    /// Every entry within the bar (a NaN never passes).
    bool passed = true;
};

/// One parameter's (or the input's) two comparisons.
struct ParameterCheck {
    std::string name;                    ///< "rnn.weight_hh_l0", "fc.bias", or "input"
    GradientComparison fused_vs_graph;   ///< handwritten BPTT against autograd
    GradientComparison graph_vs_numeric; ///< autograd against central differences (if run)
};

/// What verify_recurrent_gradients() found.
struct RecurrentVerifyReport {
    std::string cell;  ///< the cell's name
    /// One check per parameter, in named_parameters() order, then one for the input.
    std::vector<ParameterCheck> parameters;
    /// The model's loss on the data.
    double loss = 0;
    /// ||∂L/∂h_t|| per (layer * directions + direction, t), from each implementation.
    ///@{
    Tensor<double> hidden_grad_norms_graph, hidden_grad_norms_fused;
    ///@}
    /// Every comparison passed, the gradient norms of the two implementations included.
    bool passed = true;
};

/// Checks a built-in cell, options.cell, as the file's description says. Throws
/// std::invalid_argument for an unknown cell, zero classes or lengths that do not fit.
RecurrentVerifyReport verify_recurrent_gradients(const RecurrentVerifyOptions& options);
/// The same over any cell; the fused side needs the cell's rows.
RecurrentVerifyReport verify_recurrent_gradients(std::shared_ptr<const AnyCell<double>> cell, const RecurrentVerifyOptions& options);
/// The same over a cell struct of your own (nn/cell.hpp), which needs its fused rows.
template <class Cell>
RecurrentVerifyReport verify_cell_gradients(Cell cell, const RecurrentVerifyOptions& options) {
    return verify_recurrent_gradients(make_any_cell<double>(std::move(cell)), options);
}

/// The report as the verification program prints it: the model, one line per parameter (the
/// handwritten-vs-autograd and autograd-vs-numeric errors), ||∂L/∂h_t|| per step from both
/// implementations on a log-scale bar, and the verdict.
std::string format_report(const RecurrentVerifyReport& report, const RecurrentVerifyOptions& options);

}  // namespace xgrad::nn
