// Finite-difference check of gradients, for any function of variables.
//
//   auto report = xgrad::gradcheck(
//       [](const std::vector<xgrad::Var<double>>& v) { return xgrad::tanh(xgrad::matmul(v[0], v[1])); },
//       {x, w});
//   if (!report.passed) fmt::print("{}\n", report.summary());
//
// The full Jacobian is compared: numerically by central differences (one pair of forward
// passes per input element) and analytically by one backward pass per output element. An entry
// passes when |analytic - numeric| <= atol + rtol * |numeric| (PyTorch's rule and defaults).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "graph.hpp"
#include "parameter.hpp"

namespace xgrad {

struct GradcheckOptions {
    double eps = 1e-6;
    double atol = 1e-5;
    double rtol = 1e-3;
};

struct GradcheckInputReport {
    double max_abs_error = 0;   // max |analytic - numeric| over the Jacobian entries of this input
    double max_rel_error = 0;   // max |analytic - numeric| / |numeric| (entries with numeric != 0)
    std::size_t worst_input_element = 0;  // flat index of the entry with the largest violation
    std::size_t worst_output_element = 0;
    double analytic = 0, numeric = 0;  // the Jacobian entry at that place
    bool passed = true;
};

struct GradcheckReport {
    std::vector<GradcheckInputReport> inputs;  // the inputs first, then the parameters
    bool passed = true;
    std::string summary() const;  // one line per input
};

// `f` must be deterministic: it is called many times, each time on a fresh graph.
using GradcheckFn = std::function<Var<double>(const std::vector<Var<double>>&)>;

GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          GradcheckOptions options = {});
// Also checks the gradients of parameters that `f` uses (a module's, say): their values are
// perturbed in place and restored; their .grad() is overwritten.
GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          const std::vector<Parameter<double>>& parameters, GradcheckOptions options = {});

}  // namespace xgrad
