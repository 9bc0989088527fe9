#include "rnn.hpp"

#include <cmath>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

namespace {
void check_probability(std::string_view who, std::string_view option, double p) {
    if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument(fmt::format("{}: {} = {} is not in [0, 1)", who, option, p));
}

void check_sizes(std::string_view who, std::size_t input_size, std::size_t hidden_size) {
    if (input_size == 0 || hidden_size == 0) {
        throw std::invalid_argument(
            fmt::format("{}: input_size ({}) and hidden_size ({}) must be positive", who, input_size, hidden_size));
    }
}

void check_settings(std::string_view who, const RecurrentSettings& s) {
    check_probability(who, "dropout", s.dropout);
    check_probability(who, "dropout_input", s.dropout_input);
    check_probability(who, "dropout_output", s.dropout_output);
    check_probability(who, "dropout_recurrent", s.dropout_recurrent);
    check_probability(who, "zoneout", s.zoneout);
    check_probability(who, "zoneout_cell", s.zoneout_cell);
}

template <class Options>
RNNSpec spec_of(RecurrentMode mode, const Options& o) {
    RNNSpec s;
    s.mode = mode;
    s.input_size = o.input_size();
    s.hidden_size = o.hidden_size();
    s.num_layers = o.num_layers();
    s.bias = o.bias();
    s.bidirectional = o.bidirectional();
    return s;
}

// The sizes fixed the parameters' shapes at construction; changing them later would be ignored.
template <class Options>
void check_structure(std::string_view who, const Options& o, const RNNSpec& s) {
    if (o.input_size() != s.input_size || o.hidden_size() != s.hidden_size || o.num_layers() != s.num_layers ||
        o.bias() != s.bias || o.bidirectional() != s.bidirectional) {
        throw std::logic_error(fmt::format("{}: input_size, hidden_size, num_layers, bias and bidirectional cannot change "
                                           "after construction (build a new layer)", who));
    }
}

template <class Options>
RecurrentSettings settings_of(const Options& o, double zoneout_cell) {
    return {o.batch_first(), o.dropout(), o.dropout_input(), o.dropout_output(), o.dropout_recurrent(), o.zoneout(),
            zoneout_cell, o.implementation()};
}

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

// One step of a cell from primitive ops. x_proj: this step's input projection (B, gates * H), with
// b_ih and, for RNN and LSTM, b_hh; h_in: the state fed through W_hh (after recurrent dropout);
// h_prev and c_prev: the carried states. Returns (h, c).
template <class T>
std::pair<Var<T>, Var<T>> graph_step(const RNNSpec& s, const Var<T>& x_proj, const Var<T>& h_in, const Var<T>& h_prev,
                                     const Var<T>& c_prev, const Var<T>& w_hh, const Var<T>& b_hh) {
    const std::size_t H = s.hidden_size;
    auto part = [H](const Var<T>& v, std::size_t i) { return narrow(v, -1, i * H, H); };
    switch (s.mode) {
    case RecurrentMode::rnn: {  // h = φ(x_proj + W_hh h)
        const Var<T> a = x_proj + linear(h_in, w_hh);
        return {s.nonlinearity == Nonlinearity::tanh ? tanh(a) : relu(a), {}};
    }
    case RecurrentMode::lstm: {  // c = f c_prev + i g;  h = o tanh(c)
        const Var<T> gates = x_proj + linear(h_in, w_hh);
        const Var<T> c = sigmoid(part(gates, 1)) * c_prev + sigmoid(part(gates, 0)) * tanh(part(gates, 2));
        return {sigmoid(part(gates, 3)) * tanh(c), c};
    }
    case RecurrentMode::gru: {  // n = tanh(x_n + r (W_hn h + b_hn));  h = (1 - z) n + z h_prev
        const Var<T> hp = linear(h_in, w_hh, b_hh);
        const Var<T> r = sigmoid(part(x_proj, 0) + part(hp, 0));
        const Var<T> z = sigmoid(part(x_proj, 1) + part(hp, 1));
        const Var<T> n = tanh(part(x_proj, 2) + r * part(hp, 2));
        return {(T(1) - z) * n + z * h_prev, {}};
    }
    }
    throw std::logic_error("graph_step: unknown mode");
}

// Zoneout: keep each unit's previous value with probability p in training; blend in evaluation.
template <class T>
Var<T> zoneout(const Var<T>& fresh, const Var<T>& previous, double p, bool training, Generator& gen) {
    if (p == 0.0) return fresh;
    if (!training) return fresh * static_cast<T>(1.0 - p) + previous * static_cast<T>(p);
    const Tensor<T> keep = bernoulli<T>(fresh.shape(), p, gen);
    return xgrad::where(xt::xarray<bool>(keep > T(0.5)), previous, fresh);
}
}  // namespace

template <class T>
RecurrentBase<T>::RecurrentBase(std::string name, const RNNSpec& spec, const RecurrentSettings& settings, Generator& gen)
    : Module<T>(std::move(name)), spec_(spec), dropout_generator_(gen.next_u64()) {
    check_sizes(this->type_name(), spec.input_size, spec.hidden_size);
    if (spec.num_layers == 0) throw std::invalid_argument(fmt::format("{}: num_layers must be at least 1", this->type_name()));
    check_settings(this->type_name(), settings);
    const std::size_t H = spec.hidden_size, GH = spec.gates() * H;
    const double bound = 1.0 / std::sqrt(static_cast<double>(H));
    for (std::size_t l = 0; l < spec.num_layers; ++l) {
        for (std::size_t d = 0; d < spec.directions(); ++d) {
            const std::string suffix = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
            auto add = [&](const char* name, const Shape& shape) {
                weights_.push_back(this->register_parameter(name + suffix, uniform<T>(shape, -bound, bound, gen)));
            };
            add("weight_ih", {GH, spec.layer_input_size(l)});
            add("weight_hh", {GH, H});
            if (spec.bias) {
                add("bias_ih", {GH});
                add("bias_hh", {GH});
            }
        }
    }
}

template <class T>
LSTMOutput<T> RecurrentBase<T>::run(Tape<T>& tape, const Var<T>& x, const Indices* ids, const Var<T>& h0, const Var<T>& c0,
                                    const std::vector<std::int64_t>& lengths, const RecurrentSettings& settings) {
    const std::size_t steps = ids ? ids->shape(0) : x.shape()[0], batch = ids ? ids->shape(1) : x.shape()[1];
    std::vector<Tensor<T>> masks;  // between layers; drawn first so both paths see the same ones
    if (this->is_training() && settings.dropout > 0) {
        for (std::size_t l = 0; l + 1 < spec_.num_layers; ++l) {
            masks.push_back(dropout_mask<T>({steps, batch, spec_.directions() * spec_.hidden_size}, settings.dropout,
                                            dropout_generator_));
        }
    }
    const bool variational = this->is_training() &&
                             (settings.dropout_input > 0 || settings.dropout_output > 0 || settings.dropout_recurrent > 0);
    const bool zoned = settings.zoneout > 0 || settings.zoneout_cell > 0;
    tracked_hidden_.clear();
    fused_grad_norms_.reset();
    if (settings.implementation == RNNImplementation::graph || variational || zoned) {
        return forward_graph(tape, x, ids, h0, c0, lengths, masks, settings);
    }
    std::vector<Var<T>> params;
    for (const Parameter<T>& p : weights_) params.push_back(tape.parameter(p));
    if (track_hidden_grads_) fused_grad_norms_ = std::make_shared<Tensor<T>>();
    return rnn_fused(spec_, x, h0, c0, params, lengths, masks, fused_grad_norms_, ids);
}

template <class T>
void RecurrentBase<T>::check_states(const Var<T>& h0, const Var<T>& c0) const {
    if (!spec_.has_cell_state() && c0.defined()) {
        throw std::invalid_argument(fmt::format("{}: c0 is for LSTM only", this->type_name()));
    }
    if (spec_.has_cell_state() && h0.defined() != c0.defined()) {
        throw std::invalid_argument(fmt::format("LSTM: h0 and c0 go together: give both or neither (got {} only)",
                                                h0.defined() ? "h0" : "c0"));
    }
}

// The cells' equations, one step at a time, over every layer and direction.
template <class T>
LSTMOutput<T> RecurrentBase<T>::forward_graph(Tape<T>& tape, const Var<T>& x, const Indices* ids, const Var<T>& h0,
                                              const Var<T>& c0, const std::vector<std::int64_t>& lengths,
                                              const std::vector<Tensor<T>>& masks, const RecurrentSettings& settings) {
    const RNNSpec& s = spec_;
    const std::size_t steps = ids ? ids->shape(0) : x.shape()[0], batch = ids ? ids->shape(1) : x.shape()[1];
    const std::size_t H = s.hidden_size, D = s.directions();
    const std::size_t per = s.bias ? 4 : 2;
    const bool lstm = s.has_cell_state(), gru = s.mode == RecurrentMode::gru, training = this->is_training();
    // Which sequences are still running at step t, as a (B, 1) mask broadcast over the features.
    std::vector<xt::xarray<bool>> running;
    for (std::size_t t = 0; !lengths.empty() && t < steps; ++t) {
        xt::xarray<bool> m = xt::xarray<bool>::from_shape({batch, 1});
        for (std::size_t b = 0; b < batch; ++b) m(b, 0) = static_cast<std::int64_t>(t) < lengths[b];
        running.push_back(std::move(m));
    }
    const Var<T> zero_state = zeros(tape, batch, H);
    if (track_hidden_grads_) tracked_hidden_.assign(s.num_layers * D * steps, Var<T>());
    auto constant = [&](Tensor<T> t) { return tape.leaf(std::move(t), false); };
    const double p_in = training ? settings.dropout_input : 0, p_out = training ? settings.dropout_output : 0;
    const double p_rec = training ? settings.dropout_recurrent : 0;

    Var<T> layer_input = x;
    std::vector<Var<T>> final_h, final_c;
    for (std::size_t l = 0; l < s.num_layers; ++l) {
        std::vector<std::vector<Var<T>>> outputs(D, std::vector<Var<T>>(steps));
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            auto param = [&](std::size_t i) { return tape.parameter(weights_[k * per + i]); };
            // All steps' input projections at once: (T, B, gates * H); for one-hot indices, the
            // rows of W_ihᵀ they select.
            Var<T> projected;
            if (l == 0 && ids) {
                projected = embedding(transpose(param(0), 0, 1), *ids);
                if (s.bias) projected = projected + param(2);
            } else {
                Var<T> in = layer_input;
                if (p_in > 0) in = in * constant(dropout_mask<T>({batch, s.layer_input_size(l)}, p_in, dropout_generator_));
                projected = linear(in, param(0), s.bias ? param(2) : Var<T>());
            }
            if (s.bias && !gru) projected = projected + param(3);
            const Var<T> w_hh = param(1), b_hh = s.bias && gru ? param(3) : Var<T>();
            const Var<T> recurrent_mask = p_rec > 0 ? constant(dropout_mask<T>({batch, H}, p_rec, dropout_generator_)) : Var<T>();
            Var<T> h = h0.defined() ? select(h0, 0, k) : zero_state;
            Var<T> c = lstm ? (c0.defined() ? select(c0, 0, k) : zero_state) : Var<T>();
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = d == 0 ? step : steps - 1 - step;
                const Var<T> h_in = recurrent_mask.defined() ? h * recurrent_mask : h;
                auto [h_new, c_new] = graph_step(s, select(projected, 0, t), h_in, h, c, w_hh, b_hh);
                if (track_hidden_grads_) {
                    h_new.retain_grad();
                    tracked_hidden_[k * steps + t] = h_new;
                }
                h_new = zoneout(h_new, h, settings.zoneout, training, dropout_generator_);
                if (lstm) c_new = zoneout(c_new, c, settings.zoneout_cell, training, dropout_generator_);
                if (lengths.empty()) {
                    outputs[d][t] = h_new;
                    h = h_new;
                    c = c_new;
                } else {
                    outputs[d][t] = xgrad::where(running[t], h_new, zero_state);
                    h = xgrad::where(running[t], h_new, h);
                    if (lstm) c = xgrad::where(running[t], c_new, c);
                }
            }
            final_h.push_back(h);
            if (lstm) final_c.push_back(c);
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
    return {layer_input, stack(final_h, 0), lstm ? stack(final_c, 0) : Var<T>()};
}

template <class T>
LSTMOutput<T> RecurrentBase<T>::forward_any(const Var<T>& input, const Var<T>& h0, const Var<T>& c0,
                                            const std::vector<std::int64_t>& lengths) {
    check_states(h0, c0);
    const RecurrentSettings s = settings();
    check_settings(this->type_name(), s);
    const Shape h0_shape = h0.defined() ? h0.shape() : Shape{}, c0_shape = c0.defined() ? c0.shape() : Shape{};
    check_rnn_args(this->type_name(), spec_, input.shape(), s.batch_first, h0.defined() ? &h0_shape : nullptr, lengths,
                   c0.defined() ? &c0_shape : nullptr);
    LSTMOutput<T> r = run(input.tape(), s.batch_first ? transpose(input, 0, 1) : input, nullptr, h0, c0, lengths, s);
    if (s.batch_first) r.output = transpose(r.output, 0, 1);
    return r;
}

template <class T>
LSTMOutput<T> RecurrentBase<T>::forward_indices(Graph<T>& graph, const Indices& ids, const Var<T>& h0, const Var<T>& c0,
                                                const std::vector<std::int64_t>& lengths) {
    const std::string& who = this->type_name();
    check_states(h0, c0);
    const RecurrentSettings s = settings();
    check_settings(who, s);
    if (s.dropout_input > 0 && this->is_training()) {
        throw std::invalid_argument(fmt::format("{}: dropout_input does not apply to index input (drop the one-hot rows yourself)", who));
    }
    check_rnn_ids(who, ids, spec_.input_size);
    const Indices time_major = s.batch_first ? Indices(xt::transpose(ids)) : ids;
    const Shape as_input = {ids.shape(0), ids.shape(1), spec_.input_size};
    const Shape h0_shape = h0.defined() ? h0.shape() : Shape{}, c0_shape = c0.defined() ? c0.shape() : Shape{};
    check_rnn_args(who, spec_, as_input, s.batch_first, h0.defined() ? &h0_shape : nullptr, lengths,
                   c0.defined() ? &c0_shape : nullptr);
    LSTMOutput<T> r = run(graph.tape(), Var<T>(), &time_major, h0, c0, lengths, s);
    if (s.batch_first) r.output = transpose(r.output, 0, 1);
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

template <class T>
RNN<T>::RNN(const RNNOptions& o, Generator& gen)
    : RecurrentBase<T>("RNN", [&] { RNNSpec s = spec_of(RecurrentMode::rnn, o); s.nonlinearity = o.nonlinearity(); return s; }(),
                       settings_of(o, 0.0), gen),
      options_(o) {}

template <class T>
RecurrentSettings RNN<T>::settings() const {
    check_structure("RNN", options_, this->spec());
    return settings_of(options_, 0.0);
}

template <class T>
RNNOutput<T> RNN<T>::forward(const Var<T>& input, const Var<T>& h0, const std::vector<std::int64_t>& lengths) {
    LSTMOutput<T> r = this->forward_any(input, h0, {}, lengths);
    return {r.output, r.h_n};
}

template <class T>
LSTM<T>::LSTM(const LSTMOptions& o, Generator& gen)
    : RecurrentBase<T>("LSTM", spec_of(RecurrentMode::lstm, o), settings_of(o, o.zoneout_cell() < 0 ? o.zoneout() : o.zoneout_cell()),
                       gen),
      options_(o) {}

template <class T>
RecurrentSettings LSTM<T>::settings() const {
    check_structure("LSTM", options_, this->spec());
    return settings_of(options_, options_.zoneout_cell() < 0 ? options_.zoneout() : options_.zoneout_cell());
}

template <class T>
LSTMOutput<T> LSTM<T>::forward(const Var<T>& input, const Var<T>& h0, const Var<T>& c0,
                               const std::vector<std::int64_t>& lengths) {
    return this->forward_any(input, h0, c0, lengths);
}

template <class T>
GRU<T>::GRU(const GRUOptions& o, Generator& gen)
    : RecurrentBase<T>("GRU", spec_of(RecurrentMode::gru, o), settings_of(o, 0.0), gen), options_(o) {}

template <class T>
RecurrentSettings GRU<T>::settings() const {
    check_structure("GRU", options_, this->spec());
    return settings_of(options_, 0.0);
}

template <class T>
RNNOutput<T> GRU<T>::forward(const Var<T>& input, const Var<T>& h0, const std::vector<std::int64_t>& lengths) {
    LSTMOutput<T> r = this->forward_any(input, h0, {}, lengths);
    return {r.output, r.h_n};
}

template <class T>
CellBase<T>::CellBase(std::string name, RecurrentMode mode, const RNNCellOptions& options, Generator& gen)
    : Module<T>(std::move(name)), mode_(mode), options_(options) {
    check_sizes(this->type_name(), options.input_size(), options.hidden_size());
    RNNSpec s;
    s.mode = mode;
    const std::size_t H = options.hidden_size(), GH = s.gates() * H;
    const double bound = 1.0 / std::sqrt(static_cast<double>(H));
    weight_ih = this->register_parameter("weight_ih", uniform<T>({GH, options.input_size()}, -bound, bound, gen));
    weight_hh = this->register_parameter("weight_hh", uniform<T>({GH, H}, -bound, bound, gen));
    if (options.bias()) {
        bias_ih = this->register_parameter("bias_ih", uniform<T>({GH}, -bound, bound, gen));
        bias_hh = this->register_parameter("bias_hh", uniform<T>({GH}, -bound, bound, gen));
    }
}

template <class T>
LSTMOutput<T> CellBase<T>::step(const Var<T>& input, const Var<T>& h, const Var<T>& c) const {
    const std::string& who = this->type_name();
    const Shape in = input.shape();
    const std::size_t H = options_.hidden_size();
    if (in.size() != 2 || in[1] != options_.input_size()) {
        throw ShapeError(fmt::format("{}: input must be (batch, {}), got {}", who, options_.input_size(), shape_str(in)));
    }
    for (auto [name, state] : {std::pair{"hx", &h}, std::pair{"cx", &c}}) {
        if (state->defined() && state->shape() != Shape{in[0], H}) {
            throw ShapeError(fmt::format("{}: {} must be {}, got {}", who, name, shape_str({in[0], H}), shape_str(state->shape())));
        }
    }
    RNNSpec s;
    s.mode = mode_;
    s.hidden_size = H;
    s.nonlinearity = options_.nonlinearity();
    Tape<T>& tape = input.tape();
    const bool bias = options_.bias(), gru = mode_ == RecurrentMode::gru;
    Var<T> projected = linear(input, tape.parameter(weight_ih), bias ? tape.parameter(bias_ih) : Var<T>());
    if (bias && !gru) projected = projected + tape.parameter(bias_hh);
    const Var<T> zero = zeros(tape, in[0], H);
    const Var<T> h_prev = h.defined() ? h : zero;
    auto [h_new, c_new] = graph_step(s, projected, h_prev, h_prev, c.defined() ? c : zero, tape.parameter(weight_hh),
                                     bias && gru ? tape.parameter(bias_hh) : Var<T>());
    return {Var<T>(), h_new, c_new};
}

template <class T>
RNNCell<T>::RNNCell(const RNNCellOptions& o, Generator& gen) : CellBase<T>("RNNCell", RecurrentMode::rnn, o, gen) {}

template <class T>
Var<T> RNNCell<T>::forward(const Var<T>& input, const Var<T>& hx) const {
    return this->step(input, hx, {}).h_n;
}

template <class T>
LSTMCell<T>::LSTMCell(const LSTMCellOptions& o, Generator& gen) : CellBase<T>("LSTMCell", RecurrentMode::lstm, o, gen) {}

template <class T>
std::pair<Var<T>, Var<T>> LSTMCell<T>::forward(const Var<T>& input, const Var<T>& hx, const Var<T>& cx) const {
    if (hx.defined() != cx.defined()) {
        throw std::invalid_argument(fmt::format("LSTMCell: hx and cx go together: give both or neither (got {} only)",
                                                hx.defined() ? "hx" : "cx"));
    }
    LSTMOutput<T> r = this->step(input, hx, cx);
    return {r.h_n, r.c_n};
}

template <class T>
GRUCell<T>::GRUCell(const GRUCellOptions& o, Generator& gen) : CellBase<T>("GRUCell", RecurrentMode::gru, o, gen) {}

template <class T>
Var<T> GRUCell<T>::forward(const Var<T>& input, const Var<T>& hx) const {
    return this->step(input, hx, {}).h_n;
}

#define XGRAD_INSTANTIATE(T)          \
    template class RecurrentBase<T>;  \
    template class RNN<T>;            \
    template class LSTM<T>;           \
    template class GRU<T>;            \
    template class CellBase<T>;       \
    template class RNNCell<T>;        \
    template class LSTMCell<T>;       \
    template class GRUCell<T>;
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
