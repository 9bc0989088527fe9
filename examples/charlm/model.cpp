#include "model.hpp"

#include <fmt/format.h>

namespace charlm {

nlohmann::json Config::to_json() const {
    return {{"cell", cell},       {"hidden", hidden},   {"layers", layers},       {"seq", seq},
            {"batch", batch},     {"dropout", dropout}, {"lr", lr},               {"clip", clip},
            {"optimizer", optimizer}, {"impl", impl},   {"seed", seed},           {"val_fraction", val_fraction}};
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
    return c;
}

CharLM::CharLM(const Config& config, std::size_t vocabulary, xgrad::Generator& gen)
    : Module<float>("CharLM"),
      rnn(xgrad::nn::RNNOptions(vocabulary, config.hidden).num_layers(config.layers).dropout(config.dropout)
              .implementation(config.impl == "graph" ? xgrad::nn::RNNImplementation::graph
                                                     : xgrad::nn::RNNImplementation::fused), gen),
      head(config.hidden, vocabulary, true, gen),
      vocabulary_(vocabulary) {
    register_module("rnn", rnn);
    register_module("head", head);
}

Output CharLM::forward(xgrad::Graph<float>& graph, const xgrad::Indices& inputs, const xgrad::Tensor<float>& h0,
                       const std::vector<std::int64_t>& lengths) {
    xgrad::Tensor<float> one_hot = xgrad::Tensor<float>::from_shape({inputs.shape(0), inputs.shape(1), vocabulary_});
    one_hot.fill(0.0f);
    for (std::size_t i = 0; i < inputs.size(); ++i) one_hot.data()[i * vocabulary_ + static_cast<std::size_t>(inputs.data()[i])] = 1.0f;
    auto [output, h_n] = rnn.forward(graph.constant(std::move(one_hot)), graph.constant(h0), lengths);
    return {head.forward(output), h_n};
}

xgrad::Tensor<float> CharLM::zero_state(std::size_t batch) const {
    xgrad::Tensor<float> h = xgrad::Tensor<float>::from_shape({rnn.options().num_layers(), batch, rnn.options().hidden_size()});
    h.fill(0.0f);
    return h;
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
