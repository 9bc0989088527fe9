#include "verify.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include <xtensor/xmath.hpp>

#include "../autograd/ops.hpp"
#include "layers.hpp"
#include "rnn.hpp"

namespace xgrad::nn {

namespace {
class Model : public Module<double> {
  public:
    Model(std::shared_ptr<const AnyCell<double>> cell, const RecurrentVerifyOptions& o, Generator& gen)
        : Module<double>("RNNVerifyModel"),
          rnn_holder(std::make_unique<RecurrentBase<double>>(
              std::move(cell), RecurrentOptions(o.input_size(), o.hidden_size()).num_layers(o.num_layers()).bidirectional(o.bidirectional()).bias(o.bias()),
              gen)),
          rnn(*rnn_holder),
          fc(o.hidden_size() * (o.bidirectional() ? 2 : 1), o.classes(), true, gen) {
        register_module("rnn", rnn);
        register_module("fc", fc);
    }
    std::unique_ptr<RecurrentBase<double>> rnn_holder;
    RecurrentBase<double>& rnn;
    Linear<double> fc;
};

struct Data {
    Tensor<double> input;  // (T, B, input_size)
    Indices targets;       // (T, B)
    Tensor<double> mask;   // (T, B): 1 where the step is inside its sequence (and counted)
};

Var<double> loss_of(Model& m, const RecurrentVerifyOptions& o, const Data& d, const Var<double>& input) {
    return cross_entropy(m.fc.forward(m.rnn.forward_states(input, {}, o.lengths()).output), d.targets, {}, d.mask);
}

GradientComparison compare(const Tensor<double>& a, const Tensor<double>& b, double abs_bar, double rel_bar) {
    GradientComparison c;
    const double scale = xt::amax(xt::abs(b))();
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double err = std::abs(a.data()[i] - b.data()[i]);
        c.max_abs = std::max(c.max_abs, err);
        if (!(err <= abs_bar + rel_bar * std::abs(b.data()[i]))) c.passed = false;
    }
    c.max_rel = scale > 0 ? c.max_abs / scale : c.max_abs;
    return c;
}

struct Gradients {
    double loss = 0;
    std::vector<Tensor<double>> values;  // parameters in named order, then the input
    Tensor<double> norms;
};

Gradients gradients(Model& m, const RecurrentVerifyOptions& o, const Data& d, RecurrentImplementation impl) {
    m.rnn.settings().implementation(impl);
    m.rnn.track_hidden_grads(true);
    m.zero_grad();
    Graph<double> g;
    Var<double> x = g.variable(d.input);
    Var<double> loss = loss_of(m, o, d, x);
    loss.backward();
    Gradients out{loss.item(), {}, m.rnn.hidden_grad_norms()};
    for (const auto& p : m.parameters()) out.values.push_back(p.grad());
    out.values.push_back(x.grad());
    return out;
}
}  // namespace

RecurrentVerifyReport verify_recurrent_gradients(const RecurrentVerifyOptions& o) {
    return verify_recurrent_gradients(make_cell<double>(o.cell(), o.nonlinearity()), o);
}

RecurrentVerifyReport verify_recurrent_gradients(std::shared_ptr<const AnyCell<double>> cell, const RecurrentVerifyOptions& o) {
    if (!o.lengths().empty()) {  // checked here too: the loss mask below reads them
        RecurrentSpec spec;
        spec.input_size = o.input_size();
        check_recurrent_args("verify_recurrent_gradients", spec, {o.steps(), o.batch(), o.input_size()}, false, {}, o.lengths());
    }
    if (o.classes() == 0) throw std::invalid_argument("verify_recurrent_gradients: classes must be positive");
    const bool lstm = cell->name() == "LSTM";
    Generator gen(o.seed());
    Model model(std::move(cell), o, gen);
    for (auto [name, p] : model.rnn.named_parameters()) {
        if (name.starts_with("weight_hh")) p.value() *= o.recurrent_scale();
        if (lstm && name.starts_with("bias_ih")) {  // gates i, f, g, o: f is the second block
            for (std::size_t j = o.hidden_size(); j < 2 * o.hidden_size(); ++j) p.value()(j) += o.forget_bias();
        }
    }
    const Shape positions = {o.steps(), o.batch()};
    Data d{uniform<double>({o.steps(), o.batch(), o.input_size()}, -1, 1, gen), Indices::from_shape(positions),
           Tensor<double>::from_shape(positions)};
    for (std::size_t t = 0; t < o.steps(); ++t) {
        for (std::size_t b = 0; b < o.batch(); ++b) {
            d.targets(t, b) = static_cast<std::int64_t>(gen.below(o.classes()));
            const bool inside = o.lengths().empty() || static_cast<std::int64_t>(t) < o.lengths()[b];
            const bool counted = !o.loss_at_last_step_only() || t + 1 == (o.lengths().empty() ? o.steps() : o.lengths()[b]);
            d.mask(t, b) = inside && counted ? 1.0 : 0.0;
        }
    }

    const Gradients graph = gradients(model, o, d, RecurrentImplementation::graph);
    const Gradients fused = gradients(model, o, d, RecurrentImplementation::fused);
    RecurrentVerifyReport report;
    report.cell = model.rnn.type_name();
    report.loss = graph.loss;
    report.hidden_grad_norms_graph = graph.norms;
    report.hidden_grad_norms_fused = fused.norms;
    auto named = model.named_parameters();
    for (std::size_t i = 0; i < graph.values.size(); ++i) {
        ParameterCheck c;
        c.name = i < named.size() ? named[i].first : "input";
        // Relative to the gradient's scale: exploding gradients carry proportionally larger rounding.
        const double scale = std::max(1.0, xt::amax(xt::abs(graph.values[i]))());
        c.fused_vs_graph = compare(fused.values[i], graph.values[i], o.agreement() * scale, 0.0);
        report.parameters.push_back(c);
    }
    if (o.finite_differences()) {
        model.rnn.settings().implementation(RecurrentImplementation::graph);
        auto loss_now = [&] {
            NoGradGuard no_grad;
            Graph<double> g;
            return loss_of(model, o, d, g.constant(d.input)).item();
        };
        for (std::size_t i = 0; i < graph.values.size(); ++i) {
            Tensor<double>& target = i < named.size() ? named[i].second.value() : d.input;
            Tensor<double> numeric = Tensor<double>::from_shape(target.shape());
            for (std::size_t e = 0; e < target.size(); ++e) {
                const double original = target.data()[e];
                target.data()[e] = original + o.eps();
                const double plus = loss_now();
                target.data()[e] = original - o.eps();
                const double minus = loss_now();
                target.data()[e] = original;
                numeric.data()[e] = (plus - minus) / (2 * o.eps());
            }
            report.parameters[i].graph_vs_numeric = compare(graph.values[i], numeric, o.atol(), o.rtol());
        }
    }
    for (const auto& c : report.parameters) {
        report.passed = report.passed && c.fused_vs_graph.passed && c.graph_vs_numeric.passed;
    }
    report.passed = report.passed && xt::amax(xt::abs(report.hidden_grad_norms_graph - report.hidden_grad_norms_fused))() <=
                                         o.agreement() * std::max(1.0, xt::amax(report.hidden_grad_norms_graph)());
    return report;
}

namespace {
std::string bar(double value, double top) {
    // Log scale over 8 decades below the largest norm, so vanishing gradients stay visible.
    if (!(value > 0) || !(top > 0)) return "";
    const double decades = std::clamp(8.0 + std::log10(value / top), 0.0, 8.0);
    return std::string(static_cast<std::size_t>(std::lround(decades * 5)), '#');
}
}  // namespace

std::string format_report(const RecurrentVerifyReport& report, const RecurrentVerifyOptions& o) {
    std::string out = fmt::format("{}({} -> {}, layers {}, {}{}{}) + Linear({}) + cross-entropy; T {}, B {}; loss {:.6f}\n\n",
                                  report.cell, o.input_size(), o.hidden_size(), o.num_layers(),
                                  report.cell == "RNN" ? (o.nonlinearity() == Nonlinearity::relu ? "relu, " : "tanh, ") : "",
                                  o.bidirectional() ? "bidirectional, " : "", o.bias() ? "bias" : "no bias", o.classes(), o.steps(),
                                  o.batch(), report.loss);
    out += fmt::format("{:<24} {:>22} {:>22}\n", "parameter", "|handwritten-autograd|", "|autograd-numeric|");
    out += fmt::format("{:<24} {:>11} {:>10} {:>11} {:>10}\n", "", "max abs", "rel", "max abs", "rel");
    for (const auto& p : report.parameters) {
        const auto& a = p.fused_vs_graph;
        const auto& n = p.graph_vs_numeric;
        out += fmt::format("{:<24} {:>11.2e} {:>10.2e} {:>11} {:>10} {}\n", p.name, a.max_abs, a.max_rel,
                           o.finite_differences() ? fmt::format("{:.2e}", n.max_abs) : "-",
                           o.finite_differences() ? fmt::format("{:.2e}", n.max_rel) : "-", a.passed && n.passed ? "ok" : "FAIL");
    }
    const auto& g = report.hidden_grad_norms_graph;
    const auto& f = report.hidden_grad_norms_fused;
    out += "\n||dL/dh_t|| per time step (graph | fused), log-scale bar over 8 decades:\n";
    const std::size_t D = o.bidirectional() ? 2 : 1;
    for (std::size_t k = 0; k < g.shape(0); ++k) {
        out += fmt::format("layer {}{}:\n", k / D, k % D ? " reverse" : "");
        double top = 0;
        for (std::size_t t = 0; t < g.shape(1); ++t) top = std::max(top, g(k, t));
        for (std::size_t t = 0; t < g.shape(1); ++t) {
            out += fmt::format("  t={:<4} {:>10.3e} | {:>10.3e}  {}\n", t, g(k, t), f(k, t), bar(g(k, t), top));
        }
    }
    out += fmt::format("\n{}\n", report.passed ? "all gradients agree" : "GRADIENTS DISAGREE beyond tolerance");
    return out;
}

}  // namespace xgrad::nn
