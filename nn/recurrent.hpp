/// @file
/// The recurrent layer over any cell (nn/cell.hpp): stacking, directions, batch_first,
/// per-sequence lengths, initial states, inter-layer dropout, variational dropout, zoneout, both
/// implementations and per-step gradient norms, written once. nn::RNN, nn::LSTM and nn::GRU
/// (nn/rnn.hpp) are this layer over the built-in cells; a cell of your own gets all of it:
///
/// @code
///   xgrad::nn::Recurrent<IndRNNCell> layer(xgrad::nn::RecurrentOptions(2, 64).num_layers(2).zoneout(0.1));
///   auto [output, h_n, states] = layer.forward(x);         // x (T, B, 2); states: h_n, then any others
///   layer.settings().implementation(xgrad::nn::RecurrentImplementation::fused);   // the cell's own rows
/// @endcode
///
/// Recurrent dropout (training only): dropout_input / dropout_output / dropout_recurrent are
/// variational (one mask per sequence, reused at every step) on each layer's input, output and the
/// state fed back through the recurrent weights; zoneout keeps each unit's previous h (and the
/// other states, e.g. LSTM's c, with zoneout_cell) with probability p, and blends with that
/// expectation in evaluation. With any of them active the layer runs the graph path even when
/// `fused` is chosen: the fused kernel has no recurrent dropout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../autograd/graph.hpp"
#include "../tensor/options.hpp"
#include "../tensor/random.hpp"
#include "cell.hpp"
#include "module.hpp"
#include "recurrent_fused.hpp"
#include "recurrent_layout.hpp"

namespace xgrad::nn {

/// Which implementation a recurrent layer runs (RecurrentSettings::implementation).
enum class RecurrentImplementation {
    graph,  ///< unrolled from primitive autograd ops
    fused,  ///< one op running the handwritten-BPTT kernel
};

/// What a recurrent layer reads at every forward; change it between calls through
/// layer.settings(), e.g. `layer.settings().implementation(RecurrentImplementation::fused)`.
/// Nothing here is stored in model files. Each option is a setter and a getter (XGRAD_OPTION).
struct RecurrentSettings {
    /// Input and output are (batch, seq, features) instead of (seq, batch, features); states keep
    /// (num_layers * directions, batch, hidden) either way.
    XGRAD_OPTION(bool, batch_first) = false;
    /// Dropout on the output of every layer but the last, in training (PyTorch's `dropout`).
    XGRAD_OPTION(double, dropout) = 0.0;
    /// graph: unrolled from primitive ops (BPTT by the tape); fused: the cell's handwritten-BPTT
    /// kernel. Both give the same numbers; fused needs a cell with fused rows.
    XGRAD_OPTION(RecurrentImplementation, implementation) = RecurrentImplementation::graph;
    /// Variational dropout on each layer's input, one mask per sequence, in training.
    XGRAD_OPTION(double, dropout_input) = 0.0;
    /// Variational dropout on each layer's output, one mask per sequence, in training.
    XGRAD_OPTION(double, dropout_output) = 0.0;
    /// Variational dropout on h_{t-1} where it enters the recurrent weights, in training.
    XGRAD_OPTION(double, dropout_recurrent) = 0.0;
    /// Zoneout of h: each unit keeps its previous value with this probability, in training.
    XGRAD_OPTION(double, zoneout) = 0.0;
    /// Zoneout of the states after h (LSTM's c); negative: the same as zoneout.
    XGRAD_OPTION(double, zoneout_cell) = -1.0;
    /// Activation checkpointing (both implementations): with k > 0, forward keeps only the states
    /// every k steps and the outputs, and backward recomputes each k-step segment before running
    /// through it (xgrad::checkpoint per segment). Memory for activations O(k) instead of O(T), for
    /// about one more forward; k ≈ √T balances the two. Unidirectional layers, without variational
    /// dropout, zoneout or track_hidden_grads; the same numbers as without it.
    XGRAD_OPTION(std::size_t, checkpoint_every) = 0;

  public:
    /// Throws std::invalid_argument naming `who` and the setting unless every probability is in [0, 1).
    void check(std::string_view who) const;
    /// Whether variational dropout applies: in training, with any of its three probabilities set.
    bool variational(bool training) const {
        return training && (dropout_input_ > 0 || dropout_output_ > 0 || dropout_recurrent_ > 0);
    }
    /// Whether zoneout applies to a cell of `states` states (zoneout_cell to those after h).
    bool zoned(std::size_t states) const { return zoneout_ > 0 || (states > 1 && zoneout_cell_ > 0); }
};

/// How a recurrent layer is built, as libtorch's RNNOptions:
/// `RecurrentOptions(96, 256).num_layers(2).dropout(0.1).implementation(RecurrentImplementation::fused)`.
/// The structure (sizes, num_layers, bias, bidirectional, and the Elman cell's nonlinearity) is
/// fixed at construction (the layer's spec()); the rest are the layer's initial settings().
/// RNNOptions, LSTMOptions and GRUOptions are this one type, so nonlinearity(relu) compiles for an
/// LSTM too (in libtorch it does not): every layer but nn::RNN refuses it at construction. Each
/// option is a setter and a getter (XGRAD_OPTION).
struct RecurrentOptions {
    /// One layer, one direction, with bias, tanh, and the default RecurrentSettings. The sizes
    /// are checked when the layer is built (both must be positive).
    RecurrentOptions(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}

    /// Features of the input.
    XGRAD_OPTION(std::size_t, input_size) = 0;
    /// Units per direction of each layer.
    XGRAD_OPTION(std::size_t, hidden_size) = 0;
    /// Stacked layers, each reading the one below's output.
    XGRAD_OPTION(std::size_t, num_layers) = 1;
    /// Whether the layers have biases (bias_ih and the cell's).
    XGRAD_OPTION(bool, bias) = true;
    /// A reverse direction beside the forward one.
    XGRAD_OPTION(bool, bidirectional) = false;
    /// φ of nn::RNN (Elman) only.
    XGRAD_OPTION(Nonlinearity, nonlinearity) = Nonlinearity::tanh;
    /// The initial RecurrentSettings of the same name (see there). Declared here again, flat as
    /// libtorch's RNNOptions, so that every option chains; settings() copies them.
    ///@{
    XGRAD_OPTION(bool, batch_first) = false;
    XGRAD_OPTION(double, dropout) = 0.0;
    XGRAD_OPTION(RecurrentImplementation, implementation) = RecurrentImplementation::graph;
    XGRAD_OPTION(double, dropout_input) = 0.0;
    XGRAD_OPTION(double, dropout_output) = 0.0;
    XGRAD_OPTION(double, dropout_recurrent) = 0.0;
    XGRAD_OPTION(double, zoneout) = 0.0;
    XGRAD_OPTION(double, zoneout_cell) = -1.0;
    XGRAD_OPTION(std::size_t, checkpoint_every) = 0;
    ///@}

  public:
    /// The structure as the layer will hold it.
    RecurrentSpec spec() const;
    /// The layer's initial settings.
    RecurrentSettings settings() const;
};

/// The layer over a cell given at run time (nn::Recurrent<Cell> fixes it at compile time).
/// Parameters per layer and direction, PyTorch-named: weight_ih_l{k}, the cell's weights, then with
/// bias bias_ih_l{k} and the cell's biases ("_reverse" for the backward direction).
template <class T>
class RecurrentBase : public Module<T> {
  public:
    /// Registers every parameter, ~ U(-1/√H, 1/√H) from `gen` as PyTorch's; the dropout generator
    /// is seeded from `gen` too. Throws std::invalid_argument for a null cell, zero sizes or layers,
    /// a nonlinearity other than tanh (nn::RNN's alone), a cell without gates or states, fused rows
    /// that do not fit the kernel (check_fused_cell), or settings out of range.
    RecurrentBase(std::shared_ptr<const AnyCell<T>> cell, const RecurrentOptions& options,
                  Generator& gen = default_generator());

    /// The structure, fixed at construction.
    const RecurrentSpec& spec() const { return spec_; }
    /// The cell the layer runs.
    const AnyCell<T>& cell() const { return *cell_; }
    /// What the next forward reads (implementation, dropout, zoneout, ...): change it between calls.
    RecurrentSettings& settings() { return settings_; }
    /// What the next forward reads.
    const RecurrentSettings& settings() const { return settings_; }
    /// The generator every dropout mask comes from (its state belongs in a checkpoint).
    Generator& dropout_generator() { return dropout_generator_; }
    /// When on, backward records ||∂L/∂h_t|| for every layer, direction and step (both
    /// implementations); read it with hidden_grad_norms() after backward: (layers * directions, T).
    void track_hidden_grads(bool on) { track_hidden_grads_ = on; }
    /// (layers * directions, T), from the latest backward (see track_hidden_grads). Throws
    /// std::logic_error when tracking is off, or before a forward and its backward have run.
    Tensor<T> hidden_grad_norms() const;

    /// Runs the layer over a batch of sequences: the output and every final state.
    /// input (T, B, input_size) (batch_first: (B, T, input_size)); initial: empty, or one per cell
    /// state, each (layers * directions, B, H) or an empty Var for zeros; lengths empty, or each
    /// sequence's length: past it the states are carried unchanged and the output is zero, and the
    /// final states are those at the sequence's own last step.
    /// Shapes and lengths that do not fit throw ShapeError / std::invalid_argument naming the argument.
    RecurrentOutput<T> forward_states(const Var<T>& input, const std::vector<Var<T>>& initial = {},
                                      const std::vector<std::int64_t>& lengths = {});
    /// The same with the input given as one-hot indices, ids (T, B) (batch_first: (B, T)) of values in
    /// [0, input_size): equal to forwarding their one-hot encoding, without the input GEMM (a row
    /// gather instead, and a scatter-add for W_ih's gradient).
    /// Refuses dropout_input in training (std::invalid_argument): drop the one-hot rows yourself.
    RecurrentOutput<T> forward_indices(Graph<T>& graph, const Indices& ids, const std::vector<Var<T>>& initial = {},
                                       const std::vector<std::int64_t>& lengths = {});
    /// What checkpointed_loss returns.
    struct SegmentedLoss {
        Var<T> loss;                ///< Σ over segments
        std::vector<Var<T>> states;  ///< the final states, as forward's
    };
    /// A segment's loss from the layer's output over its steps and the first step's index (see checkpointed_loss).
    using SegmentLossFn = std::function<Var<T>(const Var<T>& output, std::size_t t0)>;
    /// A loss over a long sequence, the way long sequences are trained: in segments of `segment`
    /// steps, each segment's layer, head and loss one checkpoint node (xgrad::checkpoint). A step
    /// then keeps the states between segments and one segment's activations at a time, O(T/segment +
    /// segment) instead of O(T), and backward runs each segment's forward again. segment_loss(output,
    /// t0) gets the layer's output over steps [t0, t0 + n), (n, B, D·H), and returns that segment's
    /// scalar loss: a sum, not a mean (the segments' losses are added). List the generators it draws
    /// from (its dropout), so the recomputation draws the same. The layer's own dropout masks are
    /// drawn for the whole sequence, so the result equals the layer run at once with the same
    /// segment losses. ids (T, B), time-major. Refuses what checkpoint_every refuses.
    SegmentedLoss checkpointed_loss(Graph<T>& graph, const Indices& ids, const std::vector<Var<T>>& initial,
                                    std::size_t segment, SegmentLossFn segment_loss, const std::vector<Generator*>& generators = {});
  private:
    // The checked, time-major call both forwards share: input, or (when input is empty) ids.
    RecurrentOutput<T> run(Tape<T>& tape, const Var<T>& input, const Indices* ids, const std::vector<Var<T>>& initial,
                           const std::vector<std::int64_t>& lengths);
    // run's work once the inter-layer dropout masks are drawn: the whole sequence at once, or
    // checkpointed segments of it.
    RecurrentOutput<T> run_whole(Tape<T>& tape, const Var<T>& input, const Indices* ids, const std::vector<Var<T>>& initial,
                                 const std::vector<std::int64_t>& lengths, const std::vector<Tensor<T>>& masks);
    RecurrentOutput<T> run_segments(Tape<T>& tape, const Var<T>& input, const Indices* ids, const std::vector<Var<T>>& initial,
                                    const std::vector<std::int64_t>& lengths, const std::vector<Tensor<T>>& masks);
    RecurrentOutput<T> forward_graph(Tape<T>& tape, const Var<T>& input, const Indices* ids,
                                     const std::vector<Var<T>>& initial, const std::vector<std::int64_t>& lengths,
                                     const std::vector<Tensor<T>>& masks);
    class GraphInputProjection;  // a direction's W_ih x_t + b_ih on the graph, dense or one-hot (recurrent.cpp)
    struct GraphCall {           // what every direction of one graph forward reads
        std::size_t steps, batch;
        std::vector<Mask> running;  // per step, (B, 1): the sequences still running; empty without lengths
        Var<T> zero_state;          // (B, H)
        const std::vector<Var<T>>& initial;
    };
    std::vector<Var<T>> graph_direction(Tape<T>& tape, const GraphCall& call, std::size_t layer, std::size_t direction,
                                        const GraphInputProjection& projection, const std::vector<Var<T>>& cell_params,
                                        std::vector<std::vector<Var<T>>>& finals);
    std::vector<Tensor<T>> layer_masks(std::size_t steps, std::size_t batch);  // inter-layer dropout, (T, B, D·H) each
    void check_segmentable(std::string_view what) const;  // what segments cannot do, refused naming `what`
    std::vector<Var<T>> entering_states(Tape<T>& tape, const std::vector<Var<T>>& initial, std::size_t batch) const;
    void check_call(const Shape& input, const std::vector<Var<T>>& initial, const std::vector<std::int64_t>& lengths) const;
    void check_step_result(const std::vector<Var<T>>& states, std::size_t batch, const Tape<T>& tape) const;
    std::vector<DirectionParameters<Var<T>>> graph_parameters(Tape<T>& tape) const;  // weights_ as leaves of `tape`

    std::shared_ptr<const AnyCell<T>> cell_;
    RecurrentSpec spec_;
    RecurrentSettings settings_;
    std::vector<DirectionParameters<Parameter<T>>> weights_;  // per (layer, direction), registered once
    Generator dropout_generator_;
    bool track_hidden_grads_ = false;
    std::vector<Var<T>> tracked_hidden_;           // graph path: h_t per (k, t)
    std::shared_ptr<Tensor<T>> fused_grad_norms_;  // fused path: written by backward
};

/// The layer over a cell type of your own (see nn/cell.hpp for what a cell declares).
template <class Cell, class T = float>
class Recurrent : public RecurrentBase<T> {
  public:
    /// A layer over a copy of `cell` (with its settings); throws as RecurrentBase's constructor.
    explicit Recurrent(const RecurrentOptions& options, Cell cell = {}, Generator& gen = default_generator())
        : RecurrentBase<T>(make_any_cell<T>(std::move(cell)), options, gen) {}
    /// The same over a default-constructed cell, weights drawn from `gen`.
    Recurrent(const RecurrentOptions& options, Generator& gen) : Recurrent(options, Cell{}, gen) {}

    /// (output, final states): see RecurrentBase::forward_states.
    RecurrentOutput<T> forward(const Var<T>& input, const std::vector<Var<T>>& initial = {},
                               const std::vector<std::int64_t>& lengths = {}) {
        return this->forward_states(input, initial, lengths);
    }
};

extern template class RecurrentBase<float>;
extern template class RecurrentBase<double>;

}  // namespace xgrad::nn
