/// @file
/// Manual versus autograd gradients, for users: a recurrent layer (any cell: a built-in one by
/// name, or your own) + Linear + cross-entropy model on random data, its gradients from the cell's
/// handwritten-BPTT rows in the fused kernel, from generic graph backprop over the cell's graph
/// step, and from central differences, compared parameter by parameter.
///
/// @code
///   const auto o = xgrad::nn::RecurrentVerifyOptions().cell("lstm").num_layers(2);
///   auto report = xgrad::nn::verify_recurrent_gradients(o);
///   fmt::print("{}", xgrad::nn::format_report(report, o));
///   auto mine = xgrad::nn::verify_cell_gradients(MyCell{}, o);   // a cell of your own (nn/cell.hpp)
/// @endcode
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../tensor/options.hpp"
#include "cell.hpp"

namespace xgrad::nn {

/// The model, the data and the bars of verify_recurrent_gradients(). All in double. Each option is
/// a setter and a getter (XGRAD_OPTION): `RecurrentVerifyOptions().cell("lstm").num_layers(2)`.
struct RecurrentVerifyOptions {
    /// A built-in cell (recurrent_cell_names()); ignored by verify_cell_gradients.
    XGRAD_OPTION(std::string, cell) = "rnn";
    /// The model's and the random data's sizes: the layer's, T steps of B sequences, and the
    /// classes of the Linear head and the targets.
    ///@{
    XGRAD_OPTION(std::size_t, input_size) = 5;
    XGRAD_OPTION(std::size_t, hidden_size) = 8;
    XGRAD_OPTION(std::size_t, num_layers) = 1;
    XGRAD_OPTION(std::size_t, steps) = 6;
    XGRAD_OPTION(std::size_t, batch) = 3;
    XGRAD_OPTION(std::size_t, classes) = 5;
    ///@}
    /// The layer's structure, as RecurrentOptions's.
    ///@{
    XGRAD_OPTION(bool, bidirectional) = false;
    XGRAD_OPTION(bool, bias) = true;
    ///@}
    /// φ of the RNN (Elman) only.
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;
    /// Each sequence's length; empty: every sequence runs all steps.
    XGRAD_OPTION(std::vector<std::int64_t>, lengths);
    /// The loss at the last step only, which makes vanishing or exploding gradients easy to see.
    XGRAD_OPTION(bool, loss_at_last_step_only) = false;
    /// Multiplies W_hh after the usual initialization.
    XGRAD_OPTION(double, recurrent_scale) = 1.0;
    /// LSTM only: added to the forget gates' bias_ih (a common init).
    XGRAD_OPTION(double, forget_bias) = 0.0;
    /// Seeds the weights, the input and the targets: the same seed, the same check.
    XGRAD_OPTION(std::uint64_t, seed) = 1;
    /// Whether to compare with finite differences, at two forward passes per parameter entry.
    XGRAD_OPTION(bool, finite_differences) = true;
    /// Bars: the kernel agrees with the graph within `agreement`; autograd agrees with finite
    /// differences entry by entry within atol + rtol * |numeric| (PyTorch's gradcheck rule).
    /// eps is the central differences' step.
    ///@{
    XGRAD_OPTION(double, agreement) = 1e-10;
    XGRAD_OPTION(double, atol) = 1e-5;
    XGRAD_OPTION(double, rtol) = 1e-3;
    XGRAD_OPTION(double, eps) = 1e-6;
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
