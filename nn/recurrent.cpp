#include "recurrent.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

void RecurrentSettings::check(std::string_view who) const {
    for (auto [name, p] : {std::pair{"dropout", dropout}, std::pair{"dropout_input", dropout_input},
                           std::pair{"dropout_output", dropout_output}, std::pair{"dropout_recurrent", dropout_recurrent},
                           std::pair{"zoneout", zoneout}}) {
        if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument(fmt::format("{}: {} = {} is not in [0, 1)", who, name, p));
    }
    if (!(zoneout_cell < 1.0) || std::isnan(zoneout_cell)) {
        throw std::invalid_argument(fmt::format("{}: zoneout_cell = {} is not in [0, 1) (or negative: as zoneout)", who, zoneout_cell));
    }
}

RecurrentOptions::RecurrentOptions(std::size_t input_size, std::size_t hidden_size) {
    spec_.input_size = input_size;
    spec_.hidden_size = hidden_size;
}

namespace {
template <class T>
Var<T> zeros(Tape<T>& tape, std::size_t batch, std::size_t hidden) {
    Tensor<T> z = Tensor<T>::from_shape({batch, hidden});
    z.fill(T(0));
    return tape.leaf(std::move(z), false);
}

// Inverted-dropout mask of shape `shape`, or an empty tensor when p is 0.
template <class T>
Tensor<T> dropout_mask(const Shape& shape, double p, Generator& gen) {
    if (p == 0.0) return Tensor<T>();
    Tensor<T> m = bernoulli<T>(shape, 1.0 - p, gen);
    m *= static_cast<T>(1.0 / (1.0 - p));
    return m;
}

// Zoneout: keep each unit's previous value with probability p in training; blend in evaluation.
template <class T>
Var<T> zoneout(const Var<T>& fresh, const Var<T>& previous, double p, bool training, Generator& gen) {
    if (p == 0.0) return fresh;
    if (!training) return fresh * static_cast<T>(1.0 - p) + previous * static_cast<T>(p);
    const Tensor<T> keep = bernoulli<T>(fresh.shape(), p, gen);
    return xgrad::where(Mask(keep > T(0.5)), previous, fresh);
}
}  // namespace

namespace {
template <class T>
const std::shared_ptr<const AnyCell<T>>& non_null(const std::shared_ptr<const AnyCell<T>>& cell) {
    if (!cell) throw std::invalid_argument("RecurrentBase: no cell given (null)");
    return cell;
}
}  // namespace

template <class T>
RecurrentBase<T>::RecurrentBase(std::shared_ptr<const AnyCell<T>> cell, const RecurrentOptions& options, Generator& gen)
    : Module<T>(std::string(non_null(cell)->name())), cell_(std::move(cell)), spec_(options.spec()),
      settings_(options.settings()), dropout_generator_(gen.next_u64()) {
    const std::string& who = this->type_name();
    // nn::RNN hands its nonlinearity to the Elman cell; anywhere else it would be silently ignored.
    if (options.nonlinearity() != Nonlinearity::tanh) {
        throw std::invalid_argument(fmt::format("{}: nonlinearity applies to RNN (Elman) layers only (a cell of your own "
                                                "takes its settings as a member)", who));
    }
    if (spec_.input_size == 0 || spec_.hidden_size == 0) {
        throw std::invalid_argument(fmt::format("{}: input_size ({}) and hidden_size ({}) must be positive", who,
                                                spec_.input_size, spec_.hidden_size));
    }
    if (spec_.num_layers == 0) throw std::invalid_argument(fmt::format("{}: num_layers must be at least 1", who));
    if (cell_->gates() == 0 || cell_->states() == 0) {
        throw std::invalid_argument(fmt::format("{}: a cell needs at least one gate and one state", who));
    }
    checked_mul(spec_.num_layers, spec_.directions(), who, "num_layers * directions");
    if (cell_->has_fused()) check_fused_cell(who, *cell_, spec_.hidden_size);  // now, not at the first fused forward
    settings_.check(who);
    const double bound = 1.0 / std::sqrt(static_cast<double>(spec_.hidden_size));
    const auto declared = cell_->parameters(spec_.hidden_size);
    for (std::size_t l = 0; l < spec_.num_layers; ++l) {
        const auto layout = layer_parameters(declared, cell_->gates(), spec_, l);
        per_direction_ = layout.size();
        for (std::size_t d = 0; d < spec_.directions(); ++d) {
            const std::string suffix = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
            for (const LayerParameter& p : layout) {
                weights_.push_back(this->register_parameter(p.name + suffix, uniform<T>(p.shape, -bound, bound, gen)));
            }
        }
    }
}

template <class T>
void RecurrentBase<T>::check_call(const Shape& input, const std::vector<Var<T>>& initial,
                                  const std::vector<std::int64_t>& lengths) const {
    const std::string& who = this->type_name();
    settings_.check(who);
    const std::size_t S = cell_->states();
    if (initial.size() > S) {
        throw std::invalid_argument(fmt::format("{}: {} initial states given, the cell has {}", who, initial.size(), S));
    }
    std::vector<Shape> shapes;
    std::vector<const Shape*> given;
    for (const Var<T>& s : initial) shapes.push_back(s.defined() ? s.shape() : Shape{});
    for (std::size_t i = 0; i < initial.size(); ++i) given.push_back(initial[i].defined() ? &shapes[i] : nullptr);
    check_rnn_args(who, spec_, input, settings_.batch_first, given, lengths);
}

// Drawn before the sequence runs, so that both paths, and segments of it, see the same ones.
template <class T>
std::vector<Tensor<T>> RecurrentBase<T>::layer_masks(std::size_t steps, std::size_t batch) {
    std::vector<Tensor<T>> masks;
    if (this->is_training() && settings_.dropout > 0) {
        for (std::size_t l = 0; l + 1 < spec_.num_layers; ++l) {
            masks.push_back(dropout_mask<T>({steps, batch, spec_.directions() * spec_.hidden_size}, settings_.dropout,
                                            dropout_generator_));
        }
    }
    return masks;
}

template <class T>
RecurrentOutput<T> RecurrentBase<T>::run(Tape<T>& tape, const Var<T>& x, const Indices* ids, const std::vector<Var<T>>& initial,
                                         const std::vector<std::int64_t>& lengths) {
    const std::size_t steps = ids ? ids->shape(0) : x.shape()[0], batch = ids ? ids->shape(1) : x.shape()[1];
    const std::vector<Tensor<T>> masks = layer_masks(steps, batch);
    if (settings_.checkpoint_every > 0 && settings_.checkpoint_every < steps && grad_enabled()) {
        return run_segments(tape, x, ids, initial, lengths, masks);
    }
    return run_whole(tape, x, ids, initial, lengths, masks);
}

template <class T>
RecurrentOutput<T> RecurrentBase<T>::run_whole(Tape<T>& tape, const Var<T>& x, const Indices* ids,
                                               const std::vector<Var<T>>& initial, const std::vector<std::int64_t>& lengths,
                                               const std::vector<Tensor<T>>& masks) {
    const RecurrentSettings& s = settings_;
    const bool variational = this->is_training() && (s.dropout_input > 0 || s.dropout_output > 0 || s.dropout_recurrent > 0);
    const bool zoned = s.zoneout > 0 || (cell_->states() > 1 && s.zoneout_cell > 0);  // zoneout_cell: states after h
    tracked_hidden_.clear();
    fused_grad_norms_.reset();
    if (s.implementation == RNNImplementation::graph || variational || zoned) {
        return forward_graph(tape, x, ids, initial, lengths, masks);
    }
    if (!cell_->has_fused()) {
        throw std::invalid_argument(fmt::format("{}: implementation fused needs the cell's fused rows (forward_row, "
                                                "backward_row); this cell has only its graph step", this->type_name()));
    }
    std::vector<Var<T>> params;
    for (const Parameter<T>& p : weights_) params.push_back(tape.parameter(p));
    if (track_hidden_grads_) fused_grad_norms_ = std::make_shared<Tensor<T>>();
    return rnn_fused<T>(cell_, spec_, x, initial, params, lengths, masks, fused_grad_norms_, ids);
}

// The cell's step, one time step at a time, over every layer and direction.
template <class T>
RecurrentOutput<T> RecurrentBase<T>::forward_graph(Tape<T>& tape, const Var<T>& x, const Indices* ids,
                                                   const std::vector<Var<T>>& initial,
                                                   const std::vector<std::int64_t>& lengths,
                                                   const std::vector<Tensor<T>>& masks) {
    const RNNSpec& s = spec_;
    const RecurrentSettings& settings = settings_;
    const std::size_t steps = ids ? ids->shape(0) : x.shape()[0], batch = ids ? ids->shape(1) : x.shape()[1];
    const std::size_t H = s.hidden_size, D = s.directions(), S = cell_->states();
    const bool training = this->is_training();
    const auto declared = cell_->parameters(H);
    // Which sequences are still running at step t, as a (B, 1) mask broadcast over the features.
    std::vector<Mask> running;
    for (std::size_t t = 0; !lengths.empty() && t < steps; ++t) {
        Mask m = Mask::from_shape({batch, 1});
        for (std::size_t b = 0; b < batch; ++b) m(b, 0) = static_cast<std::int64_t>(t) < lengths[b];
        running.push_back(std::move(m));
    }
    const Var<T> zero_state = zeros(tape, batch, H);
    // One-hot input of a batch of some size gathers each step's rows of W_ihᵀ as the step runs (below).
    const bool gather_per_step = ids && batch * cell_->gates() * H >= 4096;
    std::vector<Indices> step_ids;  // (B) per step
    for (std::size_t t = 0; gather_per_step && t < steps; ++t) {
        step_ids.push_back(Indices::from_shape({batch}));
        std::copy_n(ids->data() + t * batch, batch, step_ids.back().data());
    }
    if (track_hidden_grads_) tracked_hidden_.assign(s.num_layers * D * steps, Var<T>());
    auto constant = [&](Tensor<T> t) { return tape.leaf(std::move(t), false); };
    const double p_in = training ? settings.dropout_input : 0, p_out = training ? settings.dropout_output : 0;
    const double p_rec = training ? settings.dropout_recurrent : 0;
    const double p_zone_cell = settings.zoneout_cell < 0 ? settings.zoneout : settings.zoneout_cell;

    Var<T> layer_input = x;
    std::vector<std::vector<Var<T>>> finals(S);
    for (std::size_t l = 0; l < s.num_layers; ++l) {
        const auto layout = layer_parameters(declared, cell_->gates(), s, l);
        std::vector<std::vector<Var<T>>> outputs(D, std::vector<Var<T>>(steps));
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            Var<T> w_ih, b_ih;
            CellStep<T> in;
            in.hidden = H;
            in.params.assign(declared.size(), Var<T>());
            for (std::size_t j = 0; j < layout.size(); ++j) {
                const Var<T> p = tape.parameter(weights_[k * per_direction_ + j]);
                if (layout[j].cell_index == LayerParameter::weight_ih) {
                    w_ih = p;
                } else if (layout[j].cell_index == LayerParameter::bias_ih) {
                    b_ih = p;
                } else {
                    in.params[static_cast<std::size_t>(layout[j].cell_index)] = p;
                }
            }
            // The input projections: for one-hot indices of a batch of some size, each step's rows of
            // W_ihᵀ, gathered as the step runs (all at once, their gradient would be a T x B x
            // gates*H buffer held through backward: LSTM char-LM step at M 33 -> 22.5 MB, 26.5 ->
            // 23.5 ms); below 4096 gate values a step (a batch of one), two nodes a step cost more than
            // that (S: 0.147 -> 0.175 ms). Otherwise all steps' in one product, (T, B, gates * H).
            Var<T> projected, w_ih_rows;
            if (l == 0 && gather_per_step) {
                w_ih_rows = transpose(w_ih, 0, 1);
            } else if (l == 0 && ids) {
                projected = embedding(transpose(w_ih, 0, 1), *ids);
                if (b_ih.defined()) projected = projected + b_ih;
            } else {
                Var<T> input = layer_input;
                if (p_in > 0) input = input * constant(dropout_mask<T>({batch, s.layer_input_size(l)}, p_in, dropout_generator_));
                projected = linear(input, w_ih, b_ih);
            }
            const Var<T> recurrent_mask = p_rec > 0 ? constant(dropout_mask<T>({batch, H}, p_rec, dropout_generator_)) : Var<T>();
            std::vector<Var<T>> state(S);
            for (std::size_t i = 0; i < S; ++i) {
                state[i] = i < initial.size() && initial[i].defined() ? select(initial[i], 0, k) : zero_state;
            }
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = d == 0 ? step : steps - 1 - step;
                if (w_ih_rows.defined()) {
                    in.gates = embedding(w_ih_rows, step_ids[t]);
                    if (b_ih.defined()) in.gates = in.gates + b_ih;
                } else {
                    in.gates = select(projected, 0, t);
                }
                in.h_in = recurrent_mask.defined() ? state[0] * recurrent_mask : state[0];
                in.previous = state;
                std::vector<Var<T>> fresh = cell_->step(in);
                check_step_result(fresh, batch, tape);
                if (track_hidden_grads_) {
                    fresh[0].retain_grad();
                    tracked_hidden_[k * steps + t] = fresh[0];
                }
                for (std::size_t i = 0; i < S; ++i) {
                    fresh[i] = zoneout(fresh[i], state[i], i == 0 ? settings.zoneout : p_zone_cell, training, dropout_generator_);
                }
                if (lengths.empty()) {
                    outputs[d][t] = fresh[0];
                    state = std::move(fresh);
                } else {
                    outputs[d][t] = xgrad::where(running[t], fresh[0], zero_state);
                    for (std::size_t i = 0; i < S; ++i) state[i] = xgrad::where(running[t], fresh[i], state[i]);
                }
            }
            for (std::size_t i = 0; i < S; ++i) finals[i].push_back(state[i]);
        }
        std::vector<Var<T>> per_step(steps);
        for (std::size_t t = 0; t < steps; ++t) {
            per_step[t] = D == 1 ? outputs[0][t] : concat(std::vector<Var<T>>{outputs[0][t], outputs[1][t]}, -1);
        }
        Var<T> layer_output = stack(per_step, 0);
        if (p_out > 0) layer_output = layer_output * constant(dropout_mask<T>({batch, D * H}, p_out, dropout_generator_));
        if (l + 1 < s.num_layers && !masks.empty()) layer_output = layer_output * constant(masks[l]);
        layer_input = layer_output;
    }
    RecurrentOutput<T> out{layer_input, {}};
    for (std::size_t i = 0; i < S; ++i) out.states.push_back(stack(finals[i], 0));
    return out;
}

// A user's step could return a wrongly shaped state that broadcasting would carry on silently, or
// one from another graph that backward would never reach.
template <class T>
void RecurrentBase<T>::check_step_result(const std::vector<Var<T>>& states, std::size_t batch, const Tape<T>& tape) const {
    if (states.size() != cell_->states()) {
        throw std::logic_error(fmt::format("{}: the cell's step returned {} states, it declares {}", this->type_name(),
                                           states.size(), cell_->states()));
    }
    const Shape expected = {batch, spec_.hidden_size};
    for (std::size_t i = 0; i < states.size(); ++i) {
        if (!states[i].defined() || states[i].shape() != expected) {
            throw std::logic_error(fmt::format("{}: the cell's step returned state {} of shape {}, expected {}", this->type_name(),
                                               i, states[i].defined() ? shape_str(states[i].shape()) : "(undefined)",
                                               shape_str(expected)));
        }
        if (&states[i].tape() != &tape) {
            throw std::logic_error(fmt::format("{}: the {} cell's step returned state {} on another graph than the layer's input "
                                               "(build the states from the step's inputs)", this->type_name(), cell_->name(), i));
        }
    }
}

template <class T>
RecurrentOutput<T> RecurrentBase<T>::forward_states(const Var<T>& input, const std::vector<Var<T>>& initial,
                                                    const std::vector<std::int64_t>& lengths) {
    check_call(input.shape(), initial, lengths);
    const bool batch_first = settings_.batch_first;
    RecurrentOutput<T> r = run(input.tape(), batch_first ? transpose(input, 0, 1) : input, nullptr, initial, lengths);
    if (batch_first) r.output = transpose(r.output, 0, 1);
    return r;
}

template <class T>
RecurrentOutput<T> RecurrentBase<T>::forward_indices(Graph<T>& graph, const Indices& ids, const std::vector<Var<T>>& initial,
                                                     const std::vector<std::int64_t>& lengths) {
    const std::string& who = this->type_name();
    if (settings_.dropout_input > 0 && this->is_training()) {
        throw std::invalid_argument(fmt::format("{}: dropout_input does not apply to index input (drop the one-hot rows yourself)", who));
    }
    check_rnn_ids(who, ids, spec_.input_size);
    check_call({ids.shape(0), ids.shape(1), spec_.input_size}, initial, lengths);
    const bool batch_first = settings_.batch_first;
    const Indices time_major = batch_first ? Indices(xt::transpose(ids)) : ids;
    RecurrentOutput<T> r = run(graph.tape(), Var<T>(), &time_major, initial, lengths);
    if (batch_first) r.output = transpose(r.output, 0, 1);
    return r;
}

template <class T>
LSTMOutput<T> RecurrentBase<T>::forward_any(const Var<T>& input, const Var<T>& h0, const Var<T>& c0,
                                            const std::vector<std::int64_t>& lengths) {
    const std::string& who = this->type_name();
    const std::size_t S = cell_->states();
    if (S > 2) throw std::invalid_argument(fmt::format("{}: the cell has {} states; call forward_states", who, S));
    if (S == 1 && c0.defined()) throw std::invalid_argument(fmt::format("{}: c0 is for LSTM only", who));
    if (S == 2 && h0.defined() != c0.defined()) {
        throw std::invalid_argument(fmt::format("{}: h0 and c0 go together: give both or neither (got {} only)", who,
                                                h0.defined() ? "h0" : "c0"));
    }
    std::vector<Var<T>> initial;
    if (h0.defined()) initial = S == 2 ? std::vector<Var<T>>{h0, c0} : std::vector<Var<T>>{h0};
    RecurrentOutput<T> r = forward_states(input, initial, lengths);
    return {r.output, r.states[0], S == 2 ? r.states[1] : Var<T>()};
}

template <class T>
Tensor<T> RecurrentBase<T>::hidden_grad_norms() const {
    const std::string& who = this->type_name();
    if (!track_hidden_grads_) throw std::logic_error(who + "::hidden_grad_norms: call track_hidden_grads(true) before forward");
    if (fused_grad_norms_) {
        if (fused_grad_norms_->dimension() != 2) {
            throw std::logic_error(who + "::hidden_grad_norms: no backward has run since the last forward");
        }
        return *fused_grad_norms_;
    }
    if (tracked_hidden_.empty()) throw std::logic_error(who + "::hidden_grad_norms: no forward has run");
    const std::size_t kd = spec_.num_layers * spec_.directions(), steps = tracked_hidden_.size() / kd;
    Tensor<T> norms = Tensor<T>::from_shape({kd, steps});
    for (std::size_t k = 0; k < kd; ++k) {
        for (std::size_t t = 0; t < steps; ++t) {
            const Var<T>& h = tracked_hidden_[k * steps + t];
            T sum = 0;
            if (h.has_grad()) {
                for (T v : h.grad()) sum += v * v;
            }
            norms(k, t) = std::sqrt(sum);
        }
    }
    return norms;
}

template class RecurrentBase<float>;
template class RecurrentBase<double>;

}  // namespace xgrad::nn
