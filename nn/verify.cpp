#include "verify.hpp"

#include <cmath>

#include <xtensor/xmath.hpp>

#include "../autograd/ops.hpp"
#include "layers.hpp"
#include "rnn.hpp"

namespace xgrad::nn {

namespace {
std::unique_ptr<RecurrentBase<double>> make_layer(const RNNVerifyOptions& o, Generator& gen) {
    auto configure = [&](auto options) {
        return options.num_layers(o.num_layers).bidirectional(o.bidirectional).bias(o.bias);
    };
    switch (o.mode) {
    case RecurrentMode::lstm: return std::make_unique<LSTM<double>>(configure(LSTMOptions(o.input_size, o.hidden_size)), gen);
    case RecurrentMode::gru: return std::make_unique<GRU<double>>(configure(GRUOptions(o.input_size, o.hidden_size)), gen);
    case RecurrentMode::rnn: break;
    }
    return std::make_unique<RNN<double>>(configure(RNNOptions(o.input_size, o.hidden_size)).nonlinearity(o.nonlinearity), gen);
}

class Model : public Module<double> {
  public:
    Model(const RNNVerifyOptions& o, Generator& gen)
        : Module<double>("RNNVerifyModel"), rnn_holder(make_layer(o, gen)), rnn(*rnn_holder),
          fc(o.hidden_size * (o.bidirectional ? 2 : 1), o.classes, true, gen) {
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

Var<double> loss_of(Model& m, const RNNVerifyOptions& o, const Data& d, const Var<double>& input) {
    return cross_entropy(m.fc.forward(m.rnn.forward_any(input, {}, {}, o.lengths).output), d.targets, {}, d.mask);
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

Gradients gradients(Model& m, const RNNVerifyOptions& o, const Data& d, RNNImplementation impl) {
    m.rnn.set_implementation(impl);
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

RNNVerifyReport verify_rnn_gradients(const RNNVerifyOptions& o) {
    if (!o.lengths.empty()) {  // checked here too: the loss mask below reads them
        RNNSpec spec;
        spec.input_size = o.input_size;
        check_rnn_args("verify_rnn_gradients", spec, {o.steps, o.batch, o.input_size}, false, nullptr, o.lengths);
    }
    if (o.classes == 0) throw std::invalid_argument("verify_rnn_gradients: classes must be positive");
    Generator gen(o.seed);
    Model model(o, gen);
    for (std::size_t i = 0; i < model.rnn.flat_weights().size(); i += o.bias ? 4 : 2) {
        Parameter<double> w_hh = model.rnn.flat_weights()[i + 1];
        w_hh.value() *= o.recurrent_scale;
        if (o.mode == RecurrentMode::lstm && o.bias) {  // gates i, f, g, o: f is the second block
            Parameter<double> b_ih = model.rnn.flat_weights()[i + 2];
            for (std::size_t j = o.hidden_size; j < 2 * o.hidden_size; ++j) b_ih.value()(j) += o.forget_bias;
        }
    }
    const Shape positions = {o.steps, o.batch};
    Data d{uniform<double>({o.steps, o.batch, o.input_size}, -1, 1, gen), Indices::from_shape(positions),
           Tensor<double>::from_shape(positions)};
    for (std::size_t t = 0; t < o.steps; ++t) {
        for (std::size_t b = 0; b < o.batch; ++b) {
            d.targets(t, b) = static_cast<std::int64_t>(gen.below(o.classes));
            const bool inside = o.lengths.empty() || static_cast<std::int64_t>(t) < o.lengths[b];
            const bool counted = !o.loss_at_last_step_only || t + 1 == (o.lengths.empty() ? o.steps : o.lengths[b]);
            d.mask(t, b) = inside && counted ? 1.0 : 0.0;
        }
    }

    const Gradients graph = gradients(model, o, d, RNNImplementation::graph);
    const Gradients fused = gradients(model, o, d, RNNImplementation::fused);
    RNNVerifyReport report;
    report.loss = graph.loss;
    report.hidden_grad_norms_graph = graph.norms;
    report.hidden_grad_norms_fused = fused.norms;
    auto named = model.named_parameters();
    for (std::size_t i = 0; i < graph.values.size(); ++i) {
        ParameterCheck c;
        c.name = i < named.size() ? named[i].first : "input";
        // Relative to the gradient's scale: exploding gradients carry proportionally larger rounding.
        const double scale = std::max(1.0, xt::amax(xt::abs(graph.values[i]))());
        c.fused_vs_graph = compare(fused.values[i], graph.values[i], o.agreement * scale, 0.0);
        report.parameters.push_back(c);
    }
    if (o.finite_differences) {
        model.rnn.set_implementation(RNNImplementation::graph);
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
                target.data()[e] = original + o.eps;
                const double plus = loss_now();
                target.data()[e] = original - o.eps;
                const double minus = loss_now();
                target.data()[e] = original;
                numeric.data()[e] = (plus - minus) / (2 * o.eps);
            }
            report.parameters[i].graph_vs_numeric = compare(graph.values[i], numeric, o.atol, o.rtol);
        }
    }
    for (const auto& c : report.parameters) {
        report.passed = report.passed && c.fused_vs_graph.passed && c.graph_vs_numeric.passed;
    }
    report.passed = report.passed && xt::amax(xt::abs(report.hidden_grad_norms_graph - report.hidden_grad_norms_fused))() <=
                                         o.agreement * std::max(1.0, xt::amax(report.hidden_grad_norms_graph)());
    return report;
}

}  // namespace xgrad::nn
