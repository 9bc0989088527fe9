// The character-level language model: one-hot characters -> RNN -> Linear -> next-character
// logits, its configuration, and its optimizer.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <xgrad/xgrad.hpp>

namespace charlm {

struct Config {
    std::string cell = "rnn";
    std::size_t hidden = 256, layers = 1, seq = 64, batch = 32;
    double dropout = 0.0, lr = 2e-3, clip = 5.0, val_fraction = 0.1;
    std::string optimizer = "adam";
    std::string impl = "fused";
    std::uint64_t seed = 1;
    double zoneout = 0.0, variational_dropout = 0.0;  // recurrent dropout (the graph path runs them)
    // Training computes the loss in checkpointed segments of this many steps (0: the whole --seq at
    // once). How a step is run, not what the model is: not stored in checkpoints, free on resume.
    std::size_t checkpoint_segment = 0;

    nlohmann::json to_json() const;
    // Throws nlohmann::json::exception if malformed, InputError for integers out of range.
    static Config from_json(const nlohmann::json& j);
    // Every value in range (the command line checks the same); throws InputError naming `where`.
    void validate(const std::string& where) const;
};

// Parameters of the model for this configuration and vocabulary size.
std::size_t parameter_count(const Config& config, std::size_t vocabulary);

// The recurrent state carried from chunk to chunk: h, and c for an LSTM (empty otherwise).
struct State {
    xgrad::Tensor<float> h, c;  // (layers, B, hidden)
};

struct Output {
    xgrad::Var<float> logits;  // (T, B, vocabulary)
    State next;
};

class CharLM : public xgrad::nn::Module<float> {
  public:
    CharLM(const Config& config, std::size_t vocabulary, xgrad::Generator& gen);
    // inputs (T, B) of vocabulary indices; lengths as nn::RNN.
    Output forward(xgrad::Graph<float>& graph, const xgrad::Indices& inputs, const State& state,
                   const std::vector<std::int64_t>& lengths = {});
    // The mean cross-entropy of predicting targets (T, B) from inputs, and the state after them; with
    // segment > 0 computed in checkpointed segments of that many steps (RecurrentBase::checkpointed_loss):
    // memory O(T/segment + segment) instead of O(T), for a second forward pass in backward.
    struct Loss {
        xgrad::Var<float> loss;
        State next;
    };
    Loss training_loss(xgrad::Graph<float>& graph, const xgrad::Indices& inputs, const xgrad::Indices& targets,
                       const State& state, std::size_t segment = 0);
    State zero_state(std::size_t batch) const;
    std::size_t vocabulary() const { return vocabulary_; }

  private:
    std::unique_ptr<xgrad::nn::RecurrentBase<float>> rnn_holder_;

  public:
    xgrad::nn::RecurrentBase<float>& rnn;  // RNN, LSTM or GRU, as --cell says
    xgrad::nn::Linear<float> head;

  private:
    // The carried state as the layer's initial states, and the layer's final states as the carried state.
    std::vector<xgrad::Var<float>> entering(xgrad::Graph<float>& graph, const State& state) const;
    State leaving(const std::vector<xgrad::Var<float>>& states) const;

    std::size_t vocabulary_;
};

// The names --optimizer takes, and the optimizer each makes with torch.optim's defaults (momentum:
// SGD with momentum 0.9; adamw: weight decay 1e-2). An unknown name throws InputError.
std::vector<std::string> optimizer_names();
std::unique_ptr<xgrad::optim::Optimizer<float>> make_optimizer(const std::string& name,
                                                               std::vector<xgrad::Parameter<float>> params, double lr);
// Floats of state the optimizer `name` keeps per parameter, as the memory estimate counts them
// (memory_estimate.hpp). An unknown name throws InputError.
double optimizer_state_per_parameter(const std::string& name);

}  // namespace charlm
