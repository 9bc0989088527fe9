#include "model.hpp"

#include <fmt/format.h>

namespace charlm {

nlohmann::json Config::to_json() const {
    return {{"cell", cell},       {"hidden", hidden},   {"layers", layers},       {"seq", seq},
            {"batch", batch},     {"dropout", dropout}, {"lr", lr},               {"clip", clip},
            {"optimizer", optimizer}, {"impl", impl},   {"seed", seed},           {"val_fraction", val_fraction},
            {"zoneout", zoneout},     {"variational_dropout", variational_dropout}};
}

Config Config::from_json(const nlohmann::json& j) {
    Config c;
    c.cell = j.at("cell").get<std::string>();
    c.hidden = j.at("hidden").get<std::size_t>();
    c.layers = j.at("layers").get<std::size_t>();
    c.seq = j.at("seq").get<std::size_t>();
    c.batch = j.at("batch").get<std::size_t>();
    c.dropout = j.at("dropout").get<double>();
    c.lr = j.at("lr").get<double>();
    c.clip = j.at("clip").get<double>();
    c.optimizer = j.at("optimizer").get<std::string>();
    c.impl = j.at("impl").get<std::string>();
    c.seed = j.at("seed").get<std::uint64_t>();
    c.val_fraction = j.at("val_fraction").get<double>();
    c.zoneout = j.at("zoneout").get<double>();
    c.variational_dropout = j.at("variational_dropout").get<double>();
    return c;
}

namespace {
std::unique_ptr<xgrad::nn::RecurrentBase<float>> make_layer(const Config& config, std::size_t vocabulary,
                                                           xgrad::Generator& gen) {
    namespace nn = xgrad::nn;
    auto configure = [&](auto options) {
        return options.num_layers(config.layers).dropout(config.dropout).zoneout(config.zoneout)
            .dropout_output(config.variational_dropout).dropout_recurrent(config.variational_dropout)
            .implementation(config.impl == "graph" ? nn::RNNImplementation::graph : nn::RNNImplementation::fused);
    };
    if (config.cell == "lstm") return std::make_unique<nn::LSTM<float>>(configure(nn::LSTMOptions(vocabulary, config.hidden)), gen);
    if (config.cell == "gru") return std::make_unique<nn::GRU<float>>(configure(nn::GRUOptions(vocabulary, config.hidden)), gen);
    if (config.cell == "rnn") return std::make_unique<nn::RNN<float>>(configure(nn::RNNOptions(vocabulary, config.hidden)), gen);
    throw std::invalid_argument(fmt::format("unknown cell '{}' (rnn, lstm or gru)", config.cell));
}
}  // namespace

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
    xgrad::Tensor<float> one_hot = xgrad::Tensor<float>::from_shape({inputs.shape(0), inputs.shape(1), vocabulary_});
    one_hot.fill(0.0f);
    for (std::size_t i = 0; i < inputs.size(); ++i) one_hot.data()[i * vocabulary_ + static_cast<std::size_t>(inputs.data()[i])] = 1.0f;
    const bool lstm = rnn.spec().has_cell_state();
    auto r = rnn.forward_any(graph.constant(std::move(one_hot)), graph.constant(state.h),
                             lstm ? graph.constant(state.c) : xgrad::Var<float>(), lengths);
    return {head.forward(r.output), {r.h_n.value(), lstm ? r.c_n.value() : xgrad::Tensor<float>()}};
}

State CharLM::zero_state(std::size_t batch) const {
    xgrad::Tensor<float> h = xgrad::Tensor<float>::from_shape({rnn.spec().num_layers, batch, rnn.spec().hidden_size});
    h.fill(0.0f);
    return {h, rnn.spec().has_cell_state() ? h : xgrad::Tensor<float>()};
}

std::unique_ptr<xgrad::optim::Optimizer<float>> make_optimizer(const std::string& name,
                                                               std::vector<xgrad::Parameter<float>> params, double lr) {
    namespace optim = xgrad::optim;
    if (name == "sgd") return std::make_unique<optim::SGD<float>>(std::move(params), optim::SGDOptions(lr));
    if (name == "momentum") {
        return std::make_unique<optim::SGD<float>>(std::move(params), optim::SGDOptions(lr).momentum(0.9));
    }
    if (name == "adam") return std::make_unique<optim::Adam<float>>(std::move(params), optim::AdamOptions(lr));
    if (name == "adamw") return std::make_unique<optim::AdamW<float>>(std::move(params), optim::AdamOptions(lr).weight_decay(1e-2));
    if (name == "adagrad") return std::make_unique<optim::Adagrad<float>>(std::move(params), optim::AdagradOptions(lr));
    if (name == "rmsprop") return std::make_unique<optim::RMSprop<float>>(std::move(params), optim::RMSpropOptions(lr));
    throw std::invalid_argument(fmt::format("unknown optimizer '{}'", name));
}

}  // namespace charlm
