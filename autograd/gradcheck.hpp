/// @file
/// Finite-difference check of gradients, for any function of variables.
///
/// @code
///   auto report = xgrad::gradcheck(
///       [](const std::vector<xgrad::Var<double>>& v) { return xgrad::tanh(xgrad::matmul(v[0], v[1])); },
///       {x, w});
///   if (!report.passed) fmt::print("{}\n", report.summary());
/// @endcode
///
/// The full Jacobian is compared: numerically by central differences (one pair of forward
/// passes per input element) and analytically by one backward pass per output element. An entry
/// passes when |analytic - numeric| <= atol + rtol * |numeric| (PyTorch's rule and defaults).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "../tensor/options.hpp"
#include "graph.hpp"
#include "parameter.hpp"

namespace xgrad {

/// Step and tolerances of gradcheck(); the defaults are PyTorch's. Each option is a setter and a
/// getter (XGRAD_OPTION): `GradcheckOptions().atol(1e-8)`.
struct GradcheckOptions {
    /// Step of the central differences, (f(x + eps) - f(x - eps)) / 2 eps.
    XGRAD_OPTION(double, eps) = 1e-6;
    /// Absolute tolerance: an entry passes when |analytic - numeric| <= atol + rtol * |numeric|.
    XGRAD_OPTION(double, atol) = 1e-5;
    /// Relative tolerance, the share of |numeric| allowed on top of atol.
    XGRAD_OPTION(double, rtol) = 1e-3;
};

/// How one input (or parameter) of gradcheck() fared, over all its Jacobian entries.
struct GradcheckInputReport {
    double max_abs_error = 0;   ///< max |analytic - numeric| over the Jacobian entries of this input
    double max_rel_error = 0;   ///< max |analytic - numeric| / |numeric| (entries with numeric != 0)
    std::size_t worst_input_element = 0;  ///< flat index of the entry with the largest violation
    /// Flat index, in f's output, of that entry.
    std::size_t worst_output_element = 0;
    /// The Jacobian entry at that place: analytic from backward, numeric from central differences.
    ///@{
    double analytic = 0, numeric = 0;
    ///@}
    /// Every entry within tolerance (a NaN never passes).
    bool passed = true;
};

/// What gradcheck() found: one report per input, then one per parameter.
struct GradcheckReport {
    std::vector<GradcheckInputReport> inputs;  ///< the inputs first, then the parameters
    /// Every input and parameter passed.
    bool passed = true;
    std::string summary() const;  ///< one line per input: verdict, errors and the worst entry
};

/// The function gradcheck() differentiates: one output (any shape) from the variables made of its
/// inputs. `f` must be deterministic: it is called many times, each time on a fresh graph.
using GradcheckFn = std::function<Var<double>(const std::vector<Var<double>>&)>;

/// Compares f's Jacobian with respect to each input, by backward and by central differences.
/// Costs two forward passes per input element and one backward pass per output element, so keep
/// the shapes small.
GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          GradcheckOptions options = {});
/// Also checks the gradients of parameters that `f` uses (a module's, say): their values are
/// perturbed in place and restored; their .grad() is overwritten.
GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          const std::vector<Parameter<double>>& parameters, GradcheckOptions options = {});

}  // namespace xgrad
