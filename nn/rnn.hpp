// Recurrent layers with libtorch's options, parameter names and gate orders: RNN (Elman), LSTM
// and GRU, and their one-step cells. Each layer runs either as a graph of primitive ops unrolled
// step by step (BPTT is whatever the tape computes) or as the fused handwritten-BPTT kernel
// (nn/rnn_kernel.hpp); the two give the same numbers.
//
//   xgrad::nn::LSTM<float> lstm(xgrad::nn::LSTMOptions(96, 256).num_layers(2).dropout(0.1));
//   auto [output, h_n, c_n] = lstm.forward(x);                 // x (T, B, 96)
//   auto next = lstm.forward(x2, h_n.detach(), c_n.detach(), lengths);
//   lstm.options().implementation(xgrad::nn::RNNImplementation::fused);   // same model, fused kernel
//
// Recurrent dropout (training only): dropout_input / dropout_output / dropout_recurrent are
// variational (one mask per sequence, reused at every step) on each layer's input, output and the
// state fed back through W_hh; zoneout keeps each unit's previous h (and, for LSTM, c with
// zoneout_cell) with probability p, and blends with that expectation in evaluation. With any of
// them active the layer runs the graph path even when `fused` is chosen: the fused kernel has no
// recurrent dropout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../autograd/graph.hpp"
#include "../tensor/options.hpp"
#include "../tensor/random.hpp"
#include "module.hpp"
#include "rnn_fused.hpp"

// The options every recurrent layer shares.
#define XGRAD_RECURRENT_OPTIONS                                                       \
    XGRAD_OPTION(std::size_t, input_size);                                            \
    XGRAD_OPTION(std::size_t, hidden_size);                                           \
    XGRAD_OPTION(std::size_t, num_layers) = 1;                                        \
    XGRAD_OPTION(bool, bias) = true;                                                  \
    XGRAD_OPTION(bool, batch_first) = false; /* input, output (B, T, ·); states not */ \
    XGRAD_OPTION(double, dropout) = 0.0;     /* between layers, in training */        \
    XGRAD_OPTION(bool, bidirectional) = false;                                        \
    XGRAD_OPTION(RNNImplementation, implementation) = RNNImplementation::graph;       \
    XGRAD_OPTION(double, dropout_input) = 0.0;                                        \
    XGRAD_OPTION(double, dropout_output) = 0.0;                                       \
    XGRAD_OPTION(double, dropout_recurrent) = 0.0;                                    \
    XGRAD_OPTION(double, zoneout) = 0.0

namespace xgrad::nn {

enum class RNNImplementation {
    graph,  // unrolled from primitive autograd ops
    fused,  // one op running the handwritten-BPTT kernel
};

struct RNNOptions {
    RNNOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    XGRAD_RECURRENT_OPTIONS;
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;
};

struct LSTMOptions {
    LSTMOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    XGRAD_RECURRENT_OPTIONS;
    XGRAD_OPTION(double, zoneout_cell) = -1.0;  // negative: the same as zoneout
};

struct GRUOptions {
    GRUOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    XGRAD_RECURRENT_OPTIONS;
};

// What the shared machinery reads from any of the three option types at each forward.
struct RecurrentSettings {
    bool batch_first = false;
    double dropout = 0, dropout_input = 0, dropout_output = 0, dropout_recurrent = 0, zoneout = 0, zoneout_cell = 0;
    RNNImplementation implementation = RNNImplementation::graph;
};

// Everything RNN, LSTM and GRU share: parameters in PyTorch's order and names, both
// implementations, dropout of every kind, and per-step gradient norms.
template <class T>
class RecurrentBase : public Module<T> {
  public:
    RNNSpec spec() const { return spec_; }
    // Per (layer, direction), in the kernel's order: weight_ih, weight_hh, then bias_ih, bias_hh.
    const std::vector<Parameter<T>>& flat_weights() const { return weights_; }
    // The generator every dropout mask comes from (its state belongs in a checkpoint).
    Generator& dropout_generator() { return dropout_generator_; }
    // When on, backward records ||∂L/∂h_t|| for every layer, direction and step (both
    // implementations); read it with hidden_grad_norms() after backward: (layers * directions, T).
    void track_hidden_grads(bool on) { track_hidden_grads_ = on; }
    Tensor<T> hidden_grad_norms() const;

    // Any of the three through one call, with the layer's current options: (output, h_n, c_n);
    // c0 and c_n are for LSTM only.
    LSTMOutput<T> forward_any(const Var<T>& input, const Var<T>& h0 = {}, const Var<T>& c0 = {},
                              const std::vector<std::int64_t>& lengths = {});
    // The same with the input given as one-hot indices, ids (T, B) (batch_first: (B, T)) of values in
    // [0, input_size): equal to forwarding their one-hot encoding, without the input GEMM (a row
    // gather instead, and a scatter-add for W_ih's gradient).
    LSTMOutput<T> forward_indices(Graph<T>& graph, const Indices& ids, const Var<T>& h0 = {}, const Var<T>& c0 = {},
                                  const std::vector<std::int64_t>& lengths = {});
    virtual RecurrentSettings settings() const = 0;
    virtual void set_implementation(RNNImplementation implementation) = 0;

  protected:
    RecurrentBase(std::string name, const RNNSpec& spec, const RecurrentSettings& settings, Generator& gen);
  private:
    // input, or (when input is empty) ids, time-major by now.
    LSTMOutput<T> run(Tape<T>& tape, const Var<T>& input, const Indices* ids, const Var<T>& h0, const Var<T>& c0,
                      const std::vector<std::int64_t>& lengths, const RecurrentSettings& settings);
    LSTMOutput<T> forward_graph(Tape<T>& tape, const Var<T>& input, const Indices* ids, const Var<T>& h0, const Var<T>& c0,
                                const std::vector<std::int64_t>& lengths, const std::vector<Tensor<T>>& masks,
                                const RecurrentSettings& settings);
    void check_states(const Var<T>& h0, const Var<T>& c0) const;

    RNNSpec spec_;
    std::vector<Parameter<T>> weights_;
    Generator dropout_generator_;
    bool track_hidden_grads_ = false;
    std::vector<Var<T>> tracked_hidden_;           // graph path: h_t per (k, t)
    std::shared_ptr<Tensor<T>> fused_grad_norms_;  // fused path: written by backward
};

// Elman RNN: h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).
template <class T>
class RNN : public RecurrentBase<T> {
  public:
    explicit RNN(const RNNOptions& options, Generator& gen = default_generator());
    // input (T, B, input_size) (batch_first: (B, T, input_size)); h0 (layers * directions, B, H) or
    // empty for zeros; lengths empty, or each sequence's length: past it the state is carried
    // unchanged and the output is zero, and h_n is the state at the sequence's own last step.
    RNNOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const std::vector<std::int64_t>& lengths = {});
    RNNOptions& options() { return options_; }
    RecurrentSettings settings() const override;
    void set_implementation(RNNImplementation implementation) override { options_.implementation(implementation); }  // e.g. to switch the implementation
    const RNNOptions& options() const { return options_; }

  private:
    RNNOptions options_;
};

// LSTM, gates i, f, g, o: c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t). Returns (output, h_n, c_n).
template <class T>
class LSTM : public RecurrentBase<T> {
  public:
    explicit LSTM(const LSTMOptions& options, Generator& gen = default_generator());
    // h0 and c0 go together: both (layers * directions, B, H), or both empty for zeros.
    LSTMOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const Var<T>& c0 = {},
                          const std::vector<std::int64_t>& lengths = {});
    LSTMOptions& options() { return options_; }
    RecurrentSettings settings() const override;
    void set_implementation(RNNImplementation implementation) override { options_.implementation(implementation); }
    const LSTMOptions& options() const { return options_; }

  private:
    LSTMOptions options_;
};

// GRU, gates r, z, n: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.
template <class T>
class GRU : public RecurrentBase<T> {
  public:
    explicit GRU(const GRUOptions& options, Generator& gen = default_generator());
    RNNOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const std::vector<std::int64_t>& lengths = {});
    GRUOptions& options() { return options_; }
    RecurrentSettings settings() const override;
    void set_implementation(RNNImplementation implementation) override { options_.implementation(implementation); }
    const GRUOptions& options() const { return options_; }

  private:
    GRUOptions options_;
};

struct RNNCellOptions {
    RNNCellOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    XGRAD_OPTION(std::size_t, input_size);
    XGRAD_OPTION(std::size_t, hidden_size);
    XGRAD_OPTION(bool, bias) = true;
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;  // RNNCell only
};
using LSTMCellOptions = RNNCellOptions;
using GRUCellOptions = RNNCellOptions;

// One step of a cell, x (B, input_size), states (B, hidden_size); parameters as PyTorch's cells
// (weight_ih, weight_hh, bias_ih, bias_hh, gates stacked in PyTorch's order).
template <class T>
class CellBase : public Module<T> {
  public:
    Parameter<T> weight_ih, weight_hh, bias_ih, bias_hh;
    const RNNCellOptions& options() const { return options_; }

  protected:
    CellBase(std::string name, RecurrentMode mode, const RNNCellOptions& options, Generator& gen);
    // Checks x (and the states given) and steps the cell; c is for LSTMCell.
    LSTMOutput<T> step(const Var<T>& input, const Var<T>& h, const Var<T>& c) const;
    RecurrentMode mode_;
    RNNCellOptions options_;
};

template <class T>
class RNNCell : public CellBase<T> {
  public:
    explicit RNNCell(const RNNCellOptions& options, Generator& gen = default_generator());
    Var<T> forward(const Var<T>& input, const Var<T>& hx = {}) const;  // hx defaults to zeros
};

template <class T>
class LSTMCell : public CellBase<T> {
  public:
    explicit LSTMCell(const LSTMCellOptions& options, Generator& gen = default_generator());
    // (h', c'); hx and cx together, or neither (zeros).
    std::pair<Var<T>, Var<T>> forward(const Var<T>& input, const Var<T>& hx = {}, const Var<T>& cx = {}) const;
};

template <class T>
class GRUCell : public CellBase<T> {
  public:
    explicit GRUCell(const GRUCellOptions& options, Generator& gen = default_generator());
    Var<T> forward(const Var<T>& input, const Var<T>& hx = {}) const;
};

}  // namespace xgrad::nn
