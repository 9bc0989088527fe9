#include "recurrent.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

void RecurrentSettings::check(std::string_view who) const {
    for (auto [name, p] : {std::pair{"dropout", dropout_}, std::pair{"dropout_input", dropout_input_},
                           std::pair{"dropout_output", dropout_output_}, std::pair{"dropout_recurrent", dropout_recurrent_},
                           std::pair{"zoneout", zoneout_}}) {
        if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument(fmt::format("{}: {} = {} is not in [0, 1)", who, name, p));
    }
    if (!(zoneout_cell_ < 1.0) || std::isnan(zoneout_cell_)) {
        throw std::invalid_argument(fmt::format("{}: zoneout_cell = {} is not in [0, 1) (or negative: as zoneout)", who, zoneout_cell_));
    }
}

RecurrentSpec RecurrentOptions::spec() const {
    RecurrentSpec spec;
    spec.input_size = input_size_;
    spec.hidden_size = hidden_size_;
    spec.num_layers = num_layers_;
    spec.bias = bias_;
    spec.bidirectional = bidirectional_;
    return spec;
}

RecurrentSettings RecurrentOptions::settings() const {
    return RecurrentSettings()
        .batch_first(batch_first_)
        .dropout(dropout_)
        .implementation(implementation_)
        .dropout_input(dropout_input_)
        .dropout_output(dropout_output_)
        .dropout_recurrent(dropout_recurrent_)
        .zoneout(zoneout_)
        .zoneout_cell(zoneout_cell_)
        .checkpoint_every(checkpoint_every_);
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
        for (std::size_t d = 0; d < spec_.directions(); ++d) {
            const std::string suffix = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
            for_each_registered(weights_.emplace_back(), declared, cell_->gates(), spec_, l,
                                [&](const std::string& name, const Shape& shape, Parameter<T>& slot) {
                slot = this->register_parameter(name + suffix, uniform<T>(shape, -bound, bound, gen));
            });
        }
    }
}

template <class T>
std::vector<DirectionParameters<Var<T>>> RecurrentBase<T>::graph_parameters(Tape<T>& tape) const {
    auto leaf = [&](const Parameter<T>& p) { return p.defined() ? tape.parameter(p) : Var<T>(); };
    std::vector<DirectionParameters<Var<T>>> out;
    for (const DirectionParameters<Parameter<T>>& p : weights_) {
        DirectionParameters<Var<T>>& v = out.emplace_back();
        v.weight_ih = leaf(p.weight_ih);
        v.bias_ih = leaf(p.bias_ih);
        for (const Parameter<T>& c : p.cell) v.cell.push_back(leaf(c));
    }
    return out;
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
    check_recurrent_args(who, spec_, input, settings_.batch_first(), given, lengths);
}

// Drawn before the sequence runs, so that both paths, and segments of it, see the same ones.
template <class T>
std::vector<Tensor<T>> RecurrentBase<T>::layer_masks(std::size_t steps, std::size_t batch) {
    std::vector<Tensor<T>> masks;
    if (this->is_training() && settings_.dropout() > 0) {
        for (std::size_t l = 0; l + 1 < spec_.num_layers; ++l) {
            masks.push_back(dropout_mask<T>({steps, batch, spec_.directions() * spec_.hidden_size}, settings_.dropout(),
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
    if (settings_.checkpoint_every() > 0 && settings_.checkpoint_every() < steps && grad_enabled()) {
        return run_segments(tape, x, ids, initial, lengths, masks);
    }
    return run_whole(tape, x, ids, initial, lengths, masks);
}

template <class T>
RecurrentOutput<T> RecurrentBase<T>::run_whole(Tape<T>& tape, const Var<T>& x, const Indices* ids,
                                               const std::vector<Var<T>>& initial, const std::vector<std::int64_t>& lengths,
                                               const std::vector<Tensor<T>>& masks) {
    tracked_hidden_.clear();
    fused_grad_norms_.reset();
    // The fused kernel has no recurrent dropout or zoneout.
    if (settings_.implementation() == RecurrentImplementation::graph || settings_.variational(this->is_training()) ||
        settings_.zoned(cell_->states())) {
        return forward_graph(tape, x, ids, initial, lengths, masks);
    }
    if (!cell_->has_fused()) {
        throw std::invalid_argument(fmt::format("{}: implementation fused needs the cell's fused rows (forward_row, "
                                                "backward_row); this cell has only its graph step", this->type_name()));
    }
    if (track_hidden_grads_) fused_grad_norms_ = std::make_shared<Tensor<T>>();
    return recurrent_fused<T>(cell_, spec_, x, initial, graph_parameters(tape), lengths, masks, fused_grad_norms_, ids);
}

namespace {
// One-hot input to a batch of at least this many gate values a step gathers W_ihᵀ's rows step by
// step: all steps at once, their gradient would be a T x B x gates*H buffer held through backward;
// below it (a batch of one), two nodes a step cost more time than the buffer costs memory
// (measured on the char-LM steps in commit e3eb1c8).
constexpr std::size_t gather_per_step_from = 4096;

}  // namespace

// A direction's input projection on the graph, W_ih x_t + b_ih at each step t, and the one place
// the graph path knows one-hot input: for dense input all steps in one product, (T, B, gates * H);
// for indices the rows of W_ihᵀ they select (embedding), all at once or per step (above).
template <class T>
class RecurrentBase<T>::GraphInputProjection {
  public:
    GraphInputProjection(const Var<T>& input, const Indices* ids, const Var<T>& w_ih, const Var<T>& b_ih, std::size_t gates_h)
        : b_ih_(b_ih) {
        if (!ids) {
            all_steps_ = linear(input, w_ih, b_ih);
            return;
        }
        const std::size_t steps = ids->shape(0), batch = ids->shape(1);
        if (batch * gates_h < gather_per_step_from) {
            all_steps_ = embedding(transpose(w_ih, 0, 1), *ids);
            if (b_ih.defined()) all_steps_ = all_steps_ + b_ih;
            return;
        }
        w_ih_rows_ = transpose(w_ih, 0, 1);
        for (std::size_t t = 0; t < steps; ++t) {
            step_ids_.push_back(Indices::from_shape({batch}));
            std::copy_n(ids->data() + t * batch, batch, step_ids_.back().data());
        }
    }
    // (B, gates * H) at step t.
    Var<T> at(std::size_t t) const {
        if (all_steps_.defined()) return select(all_steps_, 0, t);
        const Var<T> rows = embedding(w_ih_rows_, step_ids_[t]);
        return b_ih_.defined() ? rows + b_ih_ : rows;
    }

  private:
    Var<T> all_steps_, w_ih_rows_, b_ih_;
    std::vector<Indices> step_ids_;  // (B) per step
};

// The cell's step, one time step at a time, over every layer and direction: a stack of layers,
// each of one or two directions (graph_direction), each over time.
template <class T>
RecurrentOutput<T> RecurrentBase<T>::forward_graph(Tape<T>& tape, const Var<T>& x, const Indices* ids,
                                                   const std::vector<Var<T>>& initial,
                                                   const std::vector<std::int64_t>& lengths,
                                                   const std::vector<Tensor<T>>& masks) {
    const RecurrentSpec& s = spec_;
    const std::size_t steps = ids ? ids->shape(0) : x.shape()[0], batch = ids ? ids->shape(1) : x.shape()[1];
    const std::size_t H = s.hidden_size, D = s.directions(), S = cell_->states();
    const bool training = this->is_training();
    GraphCall call{steps, batch, {}, zeros(tape, batch, H), initial};
    // Which sequences are still running at step t, as a (B, 1) mask broadcast over the features.
    for (std::size_t t = 0; !lengths.empty() && t < steps; ++t) {
        Mask m = Mask::from_shape({batch, 1});
        for (std::size_t b = 0; b < batch; ++b) m(b, 0) = static_cast<std::int64_t>(t) < lengths[b];
        call.running.push_back(std::move(m));
    }
    if (track_hidden_grads_) tracked_hidden_.assign(s.num_layers * D * steps, Var<T>());
    const std::vector<DirectionParameters<Var<T>>> params = graph_parameters(tape);
    auto constant = [&](Tensor<T> t) { return tape.leaf(std::move(t), false); };
    const double p_in = training ? settings_.dropout_input() : 0, p_out = training ? settings_.dropout_output() : 0;

    Var<T> layer_input = x;
    std::vector<std::vector<Var<T>>> finals(S);
    for (std::size_t l = 0; l < s.num_layers; ++l) {
        std::vector<std::vector<Var<T>>> outputs;
        for (std::size_t d = 0; d < D; ++d) {
            const DirectionParameters<Var<T>>& p = params[l * D + d];
            Var<T> input = layer_input;
            if (!(l == 0 && ids) && p_in > 0) {
                input = input * constant(dropout_mask<T>({batch, s.layer_input_size(l)}, p_in, dropout_generator_));
            }
            const GraphInputProjection projection(input, l == 0 ? ids : nullptr, p.weight_ih, p.bias_ih, cell_->gates() * H);
            outputs.push_back(graph_direction(tape, call, l, d, projection, p.cell, finals));
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
    RecurrentOutput<T> out{layer_input, {}, {}};
    for (std::size_t i = 0; i < S; ++i) out.states.push_back(stack(finals[i], 0));
    out.h_n = out.states[0];
    return out;
}

// One direction of one layer over time: the cell's step, zoneout, and past each sequence's length
// its states carried and its output zero. Returns the output of each step (in time order) and
// appends the final states to `finals`.
template <class T>
std::vector<Var<T>> RecurrentBase<T>::graph_direction(Tape<T>& tape, const GraphCall& call, std::size_t layer,
                                                      std::size_t direction, const GraphInputProjection& projection,
                                                      const std::vector<Var<T>>& cell_params,
                                                      std::vector<std::vector<Var<T>>>& finals) {
    const std::size_t steps = call.steps, S = cell_->states(), k = layer * spec_.directions() + direction;
    const bool training = this->is_training();
    const double p_rec = training ? settings_.dropout_recurrent() : 0;
    const double p_zone_cell = settings_.zoneout_cell() < 0 ? settings_.zoneout() : settings_.zoneout_cell();
    const Var<T> recurrent_mask =
        p_rec > 0 ? tape.leaf(dropout_mask<T>({call.batch, spec_.hidden_size}, p_rec, dropout_generator_), false) : Var<T>();
    CellStep<T> in;
    in.hidden = spec_.hidden_size;
    in.params = cell_params;
    std::vector<Var<T>> state(S), outputs(steps);
    for (std::size_t i = 0; i < S; ++i) {
        state[i] = i < call.initial.size() && call.initial[i].defined() ? select(call.initial[i], 0, k) : call.zero_state;
    }
    for (std::size_t step = 0; step < steps; ++step) {
        const std::size_t t = direction == 0 ? step : steps - 1 - step;
        in.gates = projection.at(t);
        in.h_in = recurrent_mask.defined() ? state[0] * recurrent_mask : state[0];
        in.previous = state;
        std::vector<Var<T>> fresh = cell_->step(in);
        check_step_result(fresh, call.batch, tape);
        if (track_hidden_grads_) {
            fresh[0].retain_grad();
            tracked_hidden_[k * steps + t] = fresh[0];
        }
        for (std::size_t i = 0; i < S; ++i) {
            fresh[i] = zoneout(fresh[i], state[i], i == 0 ? settings_.zoneout() : p_zone_cell, training, dropout_generator_);
        }
        if (call.running.empty()) {
            outputs[t] = fresh[0];
            state = std::move(fresh);
        } else {
            outputs[t] = xgrad::where(call.running[t], fresh[0], call.zero_state);
            for (std::size_t i = 0; i < S; ++i) state[i] = xgrad::where(call.running[t], fresh[i], state[i]);
        }
    }
    for (std::size_t i = 0; i < S; ++i) finals[i].push_back(state[i]);
    return outputs;
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
    const bool batch_first = settings_.batch_first();
    RecurrentOutput<T> r = run(input.tape(), batch_first ? transpose(input, 0, 1) : input, nullptr, initial, lengths);
    if (batch_first) r.output = transpose(r.output, 0, 1);
    return r;
}

template <class T>
RecurrentOutput<T> RecurrentBase<T>::forward_indices(Graph<T>& graph, const Indices& ids, const std::vector<Var<T>>& initial,
                                                     const std::vector<std::int64_t>& lengths) {
    const std::string& who = this->type_name();
    if (settings_.dropout_input() > 0 && this->is_training()) {
        throw std::invalid_argument(fmt::format("{}: dropout_input does not apply to index input (drop the one-hot rows yourself)", who));
    }
    check_recurrent_ids(who, ids, spec_.input_size);
    check_call({ids.shape(0), ids.shape(1), spec_.input_size}, initial, lengths);
    const bool batch_first = settings_.batch_first();
    const Indices time_major = batch_first ? Indices(xt::transpose(ids)) : ids;
    RecurrentOutput<T> r = run(graph.tape(), Var<T>(), &time_major, initial, lengths);
    if (batch_first) r.output = transpose(r.output, 0, 1);
    return r;
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
