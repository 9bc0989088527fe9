#include "gradcheck.hpp"

#include <cmath>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

namespace xgrad {

namespace {
// f's output on a fresh graph, as a flat vector.
std::vector<double> evaluate(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs) {
    NoGradGuard no_grad;
    Graph<double> g;
    std::vector<Var<double>> vars;
    for (const auto& x : inputs) vars.push_back(g.constant(x));
    const Tensor<double> y = f(vars).value();
    return std::vector<double>(y.begin(), y.end());
}
}  // namespace

std::string GradcheckReport::summary() const {
    std::string out;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const auto& r = inputs[i];
        out += fmt::format("input {}: {} max abs error {:.3e}, max rel error {:.3e}; worst at input element {}, "
                           "output element {}: analytic {:.10g} vs numeric {:.10g}\n",
                           i, r.passed ? "ok  " : "FAIL", r.max_abs_error, r.max_rel_error, r.worst_input_element,
                           r.worst_output_element, r.analytic, r.numeric);
    }
    return out;
}

GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs, GradcheckOptions options) {
    return gradcheck(f, inputs, {}, options);
}

GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          const std::vector<Parameter<double>>& parameters, GradcheckOptions options) {
    std::vector<Tensor<double>> perturbed = inputs;
    std::vector<Parameter<double>> params = parameters;  // handles: perturbing them perturbs the caller's
    const std::size_t outputs = evaluate(f, perturbed).size();

    // Analytic Jacobian, row by row: row j holds d y_j / d (inputs, parameters), from one backward pass.
    std::vector<std::vector<Tensor<double>>> analytic(outputs);
    for (std::size_t j = 0; j < outputs; ++j) {
        for (auto& p : params) p.zero_grad();
        Graph<double> g;
        std::vector<Var<double>> vars;
        for (const auto& x : inputs) vars.push_back(g.variable(x));
        Var<double> y = f(vars);
        Tensor<double> seed = Tensor<double>::from_shape(y.value().shape());
        seed.fill(0.0);
        seed.data()[j] = 1.0;
        if (y.requires_grad()) g.backward(y, seed);
        for (const auto& v : vars) {
            analytic[j].push_back(v.has_grad() ? v.grad() : Tensor<double>(xt::zeros<double>(v.value().shape())));
        }
        for (const auto& p : params) analytic[j].push_back(p.grad());
    }

    // Numeric Jacobian, column by column, compared entry by entry.
    std::vector<Tensor<double>*> targets;
    for (auto& x : perturbed) targets.push_back(&x);
    for (auto& p : params) targets.push_back(&p.value());
    GradcheckReport report;
    for (std::size_t i = 0; i < targets.size(); ++i) {
        Tensor<double>& target = *targets[i];
        GradcheckInputReport r;
        double worst_violation = -1;
        for (std::size_t e = 0; e < target.size(); ++e) {
            const double original = target.data()[e];
            target.data()[e] = original + options.eps();
            const std::vector<double> plus = evaluate(f, perturbed);
            target.data()[e] = original - options.eps();
            const std::vector<double> minus = evaluate(f, perturbed);
            target.data()[e] = original;
            for (std::size_t j = 0; j < outputs; ++j) {
                const double numeric = (plus[j] - minus[j]) / (2 * options.eps());
                const double a = analytic[j][i].data()[e];
                const double err = std::abs(a - numeric);
                const double violation = err - (options.atol() + options.rtol() * std::abs(numeric));
                r.max_abs_error = std::max(r.max_abs_error, err);
                if (numeric != 0) r.max_rel_error = std::max(r.max_rel_error, err / std::abs(numeric));
                // NaN never passes: the comparison below is false for it.
                if (!(violation <= 0)) r.passed = false;
                if (std::isnan(violation) || violation > worst_violation) {
                    worst_violation = std::isnan(violation) ? INFINITY : violation;
                    r.worst_input_element = e;
                    r.worst_output_element = j;
                    r.analytic = a;
                    r.numeric = numeric;
                }
            }
        }
        report.passed = report.passed && r.passed;
        report.inputs.push_back(r);
    }
    return report;
}

}  // namespace xgrad
