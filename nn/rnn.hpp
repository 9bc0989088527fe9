/// @file
/// Recurrent layers with libtorch's options, parameter names and gate orders: RNN (Elman), LSTM
/// and GRU — the layer of nn/recurrent.hpp over the cells of nn/cells/ — their one-step modules
/// (RNNCell, LSTMCell, GRUCell), and make_recurrent to build any of them by name. Each layer runs
/// either as a graph of primitive ops unrolled step by step (BPTT is whatever the tape computes) or
/// as the fused handwritten-BPTT kernel; the two give the same numbers.
///
/// @code
///   xgrad::nn::LSTM<float> lstm(xgrad::nn::LSTMOptions(96, 256).num_layers(2).dropout(0.1));
///   auto [output, h_n, c_n] = lstm.forward(x);                 // x (T, B, 96)
///   auto next = lstm.forward(x2, h_n.detach(), c_n.detach(), lengths);
///   lstm.settings().implementation(xgrad::nn::RecurrentImplementation::fused);   // same model, fused kernel
/// @endcode
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cells/elman.hpp"
#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "recurrent.hpp"

namespace xgrad::nn {

/// What nn::RNN and nn::GRU return: (output, h_n).
template <class T>
struct RNNOutput {
    /// (T, B, directions * H), or batch-first; zero past each sequence's length.
    Var<T> output;
    /// (num_layers * directions, B, H): each sequence's state at its last step.
    Var<T> h_n;
};

/// What nn::LSTM returns: (output, h_n, c_n).
template <class T>
struct LSTMOutput {
    /// (T, B, directions * H), or batch-first; zero past each sequence's length.
    Var<T> output;
    /// (num_layers * directions, B, H): each sequence's hidden state at its last step.
    Var<T> h_n;
    /// (num_layers * directions, B, H): the cell state alike.
    Var<T> c_n;
};

/// nn::RNN's options: see RecurrentOptions (one type for every recurrent layer).
using RNNOptions = RecurrentOptions;
/// nn::LSTM's options: see RecurrentOptions.
using LSTMOptions = RecurrentOptions;
/// nn::GRU's options: see RecurrentOptions.
using GRUOptions = RecurrentOptions;

/// Elman RNN: h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), φ from options.nonlinearity().
template <class T>
class RNN : public RecurrentBase<T> {
  public:
    /// Parameters weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (and "_reverse"), as
    /// torch.nn.RNN's; throws as RecurrentBase's constructor.
    explicit RNN(const RNNOptions& options, Generator& gen = default_generator());
    /// h0 (layers * directions, B, H) or empty for zeros; see RecurrentBase::forward_states.
    RNNOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const std::vector<std::int64_t>& lengths = {});
};

/// LSTM, gates i, f, g, o: c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t). Returns (output, h_n, c_n).
template <class T>
class LSTM : public RecurrentBase<T> {
  public:
    /// Parameters as torch.nn.LSTM's, the four gates stacked (4H rows) in its order; throws as
    /// RecurrentBase's constructor (a nonlinearity other than tanh included).
    explicit LSTM(const LSTMOptions& options, Generator& gen = default_generator());
    /// h0 and c0 go together: both (layers * directions, B, H), or both empty for zeros.
    LSTMOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const Var<T>& c0 = {},
                          const std::vector<std::int64_t>& lengths = {});
};

/// GRU, gates r, z, n: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.
template <class T>
class GRU : public RecurrentBase<T> {
  public:
    /// Parameters as torch.nn.GRU's, the three gates stacked (3H rows) in its order; throws as
    /// RecurrentBase's constructor (a nonlinearity other than tanh included).
    explicit GRU(const GRUOptions& options, Generator& gen = default_generator());
    /// h0 (layers * directions, B, H) or empty for zeros; see RecurrentBase::forward_states.
    RNNOutput<T> forward(const Var<T>& input, const Var<T>& h0 = {}, const std::vector<std::int64_t>& lengths = {});
};

/// The built-in cells by name: "rnn" (Elman, with `nonlinearity`), "lstm", "gru".
std::vector<std::string> recurrent_cell_names();
/// A built-in cell by name (see recurrent_cell_names), for RecurrentBase or verify_recurrent_gradients.
/// Throws std::invalid_argument for an unknown name, or a nonlinearity other than tanh for any cell but "rnn".
template <class T>
std::shared_ptr<const AnyCell<T>> make_cell(std::string_view name, Nonlinearity nonlinearity = Nonlinearity::tanh);
/// nn::RNN, nn::LSTM or nn::GRU by name, for example from a command line; throws std::invalid_argument
/// naming the known cells for any other name.
template <class T>
std::unique_ptr<RecurrentBase<T>> make_recurrent(std::string_view name, const RecurrentOptions& options,
                                                 Generator& gen = default_generator());

/// Options of the one-step modules RNNCell, LSTMCell and GRUCell, as libtorch's RNNCellOptions.
/// Each option is a setter and a getter (XGRAD_OPTION).
struct RNNCellOptions {
    /// With bias and tanh; both sizes must be positive (checked when the cell is built).
    RNNCellOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    /// Features of the input x.
    XGRAD_OPTION(std::size_t, input_size) = 0;
    /// Units of the state.
    XGRAD_OPTION(std::size_t, hidden_size) = 0;
    /// Whether the cell has bias_ih and bias_hh.
    XGRAD_OPTION(bool, bias) = true;
    /// φ of RNNCell only.
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;
};
/// LSTMCell's options: see RNNCellOptions (nonlinearity must stay tanh).
using LSTMCellOptions = RNNCellOptions;
/// GRUCell's options: see RNNCellOptions (nonlinearity must stay tanh).
using GRUCellOptions = RNNCellOptions;

/// One step of a cell, x (B, input_size), states (B, hidden_size); parameters as PyTorch's cells
/// (weight_ih, weight_hh, bias_ih, bias_hh, gates stacked in PyTorch's order).
template <class T>
class CellBase : public Module<T> {
  public:
    /// weight_ih (gates * H, input_size), weight_hh (gates * H, H), bias_ih and bias_hh (gates * H;
    /// undefined without bias), ~ U(-1/√H, 1/√H) as PyTorch's.
    ///@{
    Parameter<T> weight_ih, weight_hh, bias_ih, bias_hh;
    ///@}
    /// The options the cell was built with.
    const RNNCellOptions& options() const { return options_; }

  protected:
    /// Registers the four parameters for `cell` under the module type name `name`; throws
    /// std::invalid_argument for a zero size, or a nonlinearity the cell does not take.
    CellBase(std::string name, std::shared_ptr<const AnyCell<T>> cell, const RNNCellOptions& options, Generator& gen);
    /// Checks x and the given states ({h} or {h, c}; empty for zeros) and steps the cell.
    /// ShapeError for an input not (B, input_size) or a state not (B, hidden_size).
    std::vector<Var<T>> step(const Var<T>& input, const std::vector<Var<T>>& states) const;

  private:
    std::shared_ptr<const AnyCell<T>> cell_;
    RNNCellOptions options_;
};

/// One Elman step, as torch.nn.RNNCell: h' = φ(W_ih x + b_ih + W_hh h + b_hh).
template <class T>
class RNNCell : public CellBase<T> {
  public:
    /// φ from options.nonlinearity(); throws as CellBase's constructor.
    explicit RNNCell(const RNNCellOptions& options, Generator& gen = default_generator());
    /// h' (B, hidden_size) from x (B, input_size).
    Var<T> forward(const Var<T>& input, const Var<T>& hx = {}) const;  ///< hx defaults to zeros
};

/// One LSTM step, as torch.nn.LSTMCell (gates i, f, g, o).
template <class T>
class LSTMCell : public CellBase<T> {
  public:
    /// Throws as CellBase's constructor (a nonlinearity other than tanh included).
    explicit LSTMCell(const LSTMCellOptions& options, Generator& gen = default_generator());
    /// (h', c'); hx and cx together, or neither (zeros).
    /// Giving one without the other throws std::invalid_argument.
    std::pair<Var<T>, Var<T>> forward(const Var<T>& input, const Var<T>& hx = {}, const Var<T>& cx = {}) const;
};

/// One GRU step, as torch.nn.GRUCell (gates r, z, n).
template <class T>
class GRUCell : public CellBase<T> {
  public:
    /// Throws as CellBase's constructor (a nonlinearity other than tanh included).
    explicit GRUCell(const GRUCellOptions& options, Generator& gen = default_generator());
    /// h' (B, hidden_size) from x (B, input_size); hx (B, hidden_size) defaults to zeros.
    Var<T> forward(const Var<T>& input, const Var<T>& hx = {}) const;
};

}  // namespace xgrad::nn
