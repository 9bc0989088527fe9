#include "model.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "corpus.hpp"

namespace charlm {

nlohmann::json Config::to_json() const {
    return {{"cell", cell},       {"hidden", hidden},   {"layers", layers},       {"seq", seq},
            {"batch", batch},     {"dropout", dropout}, {"lr", lr},               {"clip", clip},
            {"optimizer", optimizer}, {"impl", impl},   {"seed", seed},           {"val_fraction", val_fraction},
            {"zoneout", zoneout},     {"variational_dropout", variational_dropout}};
}

Config Config::from_json(const nlohmann::json& j) {
    // Integers must be stored as non-negative integers: get<std::size_t>() of a float or a negative
    // number would convert out of range (undefined) or wrap around.
    auto count = [&](const char* key) {
        const nlohmann::json& v = j.at(key);
        if (!v.is_number_unsigned()) throw InputError(fmt::format("configuration: '{}' = {} is not a non-negative integer", key, v.dump()));
        return v.get<std::uint64_t>();
    };
    auto size = [&](const char* key) {
        const std::uint64_t v = count(key);
        if (v > (std::uint64_t{1} << 30)) throw InputError(fmt::format("configuration: '{}' = {} is out of range", key, v));
        return static_cast<std::size_t>(v);
    };
    Config c;
    c.cell = j.at("cell").get<std::string>();
    c.hidden = size("hidden");
    c.layers = size("layers");
    c.seq = size("seq");
    c.batch = size("batch");
    c.dropout = j.at("dropout").get<double>();
    c.lr = j.at("lr").get<double>();
    c.clip = j.at("clip").get<double>();
    c.optimizer = j.at("optimizer").get<std::string>();
    c.impl = j.at("impl").get<std::string>();
    c.seed = count("seed");
    c.val_fraction = j.at("val_fraction").get<double>();
    c.zoneout = j.at("zoneout").get<double>();
    c.variational_dropout = j.at("variational_dropout").get<double>();
    return c;
}

namespace {
using OptimizerPtr = std::unique_ptr<xgrad::optim::Optimizer<float>>;
using Params = std::vector<xgrad::Parameter<float>>;
namespace optim = xgrad::optim;

// Every optimizer --optimizer names: how to make it, and its state per parameter (for the memory estimate).
struct OptimizerKind {
    const char* name;
    double state_per_parameter;  // the buffers its options allocate (Adam without amsgrad: exp_avg, exp_avg_sq)
    OptimizerPtr (*make)(Params params, double lr);
};
const OptimizerKind optimizer_kinds[] = {
    {"sgd", 0, [](Params p, double lr) -> OptimizerPtr { return std::make_unique<optim::SGD<float>>(std::move(p), optim::SGDOptions(lr)); }},
    {"momentum", 1, [](Params p, double lr) -> OptimizerPtr {
         return std::make_unique<optim::SGD<float>>(std::move(p), optim::SGDOptions(lr).momentum(0.9));
     }},
    {"adam", 2, [](Params p, double lr) -> OptimizerPtr { return std::make_unique<optim::Adam<float>>(std::move(p), optim::AdamOptions(lr)); }},
    {"adamw", 2, [](Params p, double lr) -> OptimizerPtr {
         return std::make_unique<optim::AdamW<float>>(std::move(p), optim::AdamOptions(lr).weight_decay(1e-2));
     }},
    {"adagrad", 1, [](Params p, double lr) -> OptimizerPtr {
         return std::make_unique<optim::Adagrad<float>>(std::move(p), optim::AdagradOptions(lr));
     }},
    {"rmsprop", 1, [](Params p, double lr) -> OptimizerPtr {
         return std::make_unique<optim::RMSprop<float>>(std::move(p), optim::RMSpropOptions(lr));
     }},
};

const OptimizerKind& optimizer_kind(const std::string& name) {
    for (const OptimizerKind& kind : optimizer_kinds) {
        if (name == kind.name) return kind;
    }
    throw InputError(fmt::format("unknown optimizer '{}' ({})", name, fmt::join(optimizer_names(), ", ")));
}
}  // namespace

std::vector<std::string> optimizer_names() {
    std::vector<std::string> names;
    for (const OptimizerKind& kind : optimizer_kinds) names.emplace_back(kind.name);
    return names;
}

OptimizerPtr make_optimizer(const std::string& name, Params params, double lr) {
    return optimizer_kind(name).make(std::move(params), lr);
}

double optimizer_state_per_parameter(const std::string& name) { return optimizer_kind(name).state_per_parameter; }

namespace {
std::unique_ptr<xgrad::nn::RecurrentBase<float>> make_layer(const Config& config, std::size_t vocabulary,
                                                           xgrad::Generator& gen) {
    namespace nn = xgrad::nn;
    const auto options = nn::RecurrentOptions(vocabulary, config.hidden)
                             .num_layers(config.layers)
                             .dropout(config.dropout)
                             .zoneout(config.zoneout)
                             .dropout_output(config.variational_dropout)
                             .dropout_recurrent(config.variational_dropout)
                             .implementation(config.impl == "graph" ? nn::RecurrentImplementation::graph : nn::RecurrentImplementation::fused);
    return nn::make_recurrent<float>(config.cell, options, gen);
}
}  // namespace

void Config::validate(const std::string& where) const {
    auto fail = [&](const std::string& what) { throw InputError(fmt::format("{}: {}", where, what)); };
    const auto cells = xgrad::nn::recurrent_cell_names();
    if (std::find(cells.begin(), cells.end(), cell) == cells.end()) {
        fail(fmt::format("cell '{}' is not one of {}", cell, fmt::join(cells, ", ")));
    }
    if (impl != "graph" && impl != "fused") fail(fmt::format("impl '{}' is not graph or fused", impl));
    try {
        optimizer_kind(optimizer);
    } catch (const InputError& e) {
        fail(e.what());
    }
    for (auto [name, value] : {std::pair{"hidden", hidden}, std::pair{"layers", layers}, std::pair{"seq", seq},
                               std::pair{"batch", batch}}) {
        if (value == 0 || value > (std::size_t{1} << 30)) fail(fmt::format("{} = {} is out of range", name, value));
    }
    if (!(lr > 0) || !std::isfinite(lr)) fail(fmt::format("lr = {} must be positive", lr));
    if (!(clip > 0) || !std::isfinite(clip)) fail(fmt::format("clip = {} must be positive", clip));
    for (auto [name, value] : {std::pair{"dropout", dropout}, std::pair{"zoneout", zoneout},
                               std::pair{"variational_dropout", variational_dropout}}) {
        if (!(value >= 0 && value < 1)) fail(fmt::format("{} = {} is not in [0, 1)", name, value));
    }
    if (!(val_fraction >= 0 && val_fraction <= 0.9)) fail(fmt::format("val_fraction = {} is not in [0, 0.9]", val_fraction));
    if (checkpoint_segment > 0 && checkpoint_segment < seq && (zoneout > 0 || variational_dropout > 0)) {
        fail("checkpointed activations do not combine with zoneout or variational dropout (their masks span the whole sequence)");
    }
}

std::size_t parameter_count(const Config& c, std::size_t vocabulary) {
    // Sizes come from flags and files, and a wrapped count would pass the memory guard: every step is checked.
    auto mul = [](std::size_t a, std::size_t b) { return xgrad::checked_mul(a, b, "parameter count", "the model's size"); };
    auto add = [](std::size_t& total, std::size_t part) {
        if (__builtin_add_overflow(total, part, &total)) throw InputError("parameter count: the model's size overflows");
    };
    // The layers' parameters as the cell declares them (layers above the first are alike), then the head (V, H) and (V).
    const auto cell = xgrad::nn::make_cell<float>(c.cell);
    xgrad::nn::RecurrentSpec spec;
    spec.input_size = vocabulary;
    spec.hidden_size = c.hidden;
    spec.num_layers = std::max<std::size_t>(c.layers, 1);
    std::size_t first_layer = 0, other_layer = 0;
    for (std::size_t layer : {0, 1}) {
        xgrad::nn::DirectionParameters<int> unused;
        xgrad::nn::for_each_registered(unused, cell->parameters(c.hidden), cell->gates(), spec, layer,
                                       [&](const std::string&, const xgrad::Shape& shape, int&) {
            add(layer == 0 ? first_layer : other_layer, xgrad::numel(shape, "parameter count"));
        });
    }
    std::size_t total = 0;
    for (std::size_t part : {first_layer, mul(spec.num_layers - 1, other_layer), mul(c.hidden, vocabulary), vocabulary}) add(total, part);
    return total;
}

CharLM::CharLM(const Config& config, std::size_t vocabulary, xgrad::Generator& gen)
    : Module<float>("CharLM"),
      rnn_holder_(make_layer(config, vocabulary, gen)),
      rnn(*rnn_holder_),
      head(config.hidden, vocabulary, true, gen),
      vocabulary_(vocabulary) {
    register_module("rnn", rnn);
    register_module("head", head);
}

Output CharLM::forward(xgrad::Graph<float>& graph, const xgrad::Indices& inputs, const State& state,
                       const std::vector<std::int64_t>& lengths) {
    // One-hot characters, given as their indices: the input GEMM becomes a row gather.
    auto r = rnn.forward_indices(graph, inputs, entering(graph, state), lengths);
    return {head.forward(r.output), leaving(r.states)};
}

std::vector<xgrad::Var<float>> CharLM::entering(xgrad::Graph<float>& graph, const State& state) const {
    std::vector<xgrad::Var<float>> initial{graph.constant(state.h)};
    if (rnn.cell().states() == 2) initial.push_back(graph.constant(state.c));  // LSTM's c
    return initial;
}

State CharLM::leaving(const std::vector<xgrad::Var<float>>& states) const {
    return {states[0].value(), rnn.cell().states() == 2 ? states[1].value() : xgrad::Tensor<float>()};
}

CharLM::Loss CharLM::training_loss(xgrad::Graph<float>& graph, const xgrad::Indices& inputs, const xgrad::Indices& targets,
                                   const State& state, std::size_t segment) {
    const std::size_t steps = inputs.shape(0), batch = inputs.shape(1);
    if (segment == 0 || segment >= steps) {
        Output out = forward(graph, inputs, state);
        return {xgrad::cross_entropy(out.logits, targets), std::move(out.next)};
    }
    // Each segment's summed cross-entropy; the step's loss is their sum over all T x B positions.
    auto all_targets = std::make_shared<const xgrad::Indices>(targets);
    auto segment_loss = [this, all_targets, batch](const xgrad::Var<float>& output, std::size_t t0) {
        const std::size_t n = output.shape()[0];
        xgrad::Indices part = xgrad::Indices::from_shape({n, batch});
        std::copy_n(all_targets->data() + t0 * batch, n * batch, part.data());
        xgrad::CrossEntropyOptions sum;
        sum.reduction(xgrad::CrossEntropyOptions::Reduction::sum);
        return xgrad::cross_entropy(head.forward(output), part, sum);
    };
    auto r = rnn.checkpointed_loss(graph, inputs, entering(graph, state), segment, segment_loss);
    return {r.loss * (1.0f / static_cast<float>(steps * batch)), leaving(r.states)};
}

State CharLM::zero_state(std::size_t batch) const {
    xgrad::Tensor<float> h = xgrad::Tensor<float>::from_shape({rnn.spec().num_layers, batch, rnn.spec().hidden_size});
    h.fill(0.0f);
    return {h, rnn.cell().states() == 2 ? h : xgrad::Tensor<float>()};
}


}  // namespace charlm
