#include "rnn.hpp"

#include <cmath>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

namespace {
template <class T>
Var<T> activate(Nonlinearity f, const Var<T>& a) {
    return f == Nonlinearity::tanh ? tanh(a) : relu(a);
}

void check_sizes(std::string_view who, std::size_t input_size, std::size_t hidden_size) {
    if (input_size == 0 || hidden_size == 0) {
        throw std::invalid_argument(
            fmt::format("{}: input_size ({}) and hidden_size ({}) must be positive", who, input_size, hidden_size));
    }
}
}  // namespace

template <class T>
RNNCell<T>::RNNCell(const RNNCellOptions& options, Generator& gen) : Module<T>("RNNCell"), options_(options) {
    check_sizes("RNNCell", options.input_size(), options.hidden_size());
    const std::size_t H = options.hidden_size();
    const double bound = 1.0 / std::sqrt(static_cast<double>(H));
    weight_ih = this->register_parameter("weight_ih", uniform<T>({H, options.input_size()}, -bound, bound, gen));
    weight_hh = this->register_parameter("weight_hh", uniform<T>({H, H}, -bound, bound, gen));
    if (options.bias()) {
        bias_ih = this->register_parameter("bias_ih", uniform<T>({H}, -bound, bound, gen));
        bias_hh = this->register_parameter("bias_hh", uniform<T>({H}, -bound, bound, gen));
    }
}

// h' = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)
template <class T>
Var<T> RNNCell<T>::forward(const Var<T>& input, const Var<T>& hx) const {
    const Shape in = input.shape();
    const std::size_t H = options_.hidden_size();
    if (in.size() != 2 || in[1] != options_.input_size()) {
        throw ShapeError(fmt::format("RNNCell: input must be (batch, {}), got {}", options_.input_size(), shape_str(in)));
    }
    if (hx.defined() && hx.shape() != Shape{in[0], H}) {
        throw ShapeError(fmt::format("RNNCell: hx must be {}, got {}", shape_str({in[0], H}), shape_str(hx.shape())));
    }
    Tape<T>& tape = input.tape();
    const bool bias = options_.bias();
    Var<T> a = linear(input, tape.parameter(weight_ih), bias ? tape.parameter(bias_ih) : Var<T>());
    if (hx.defined()) a = a + linear(hx, tape.parameter(weight_hh), bias ? tape.parameter(bias_hh) : Var<T>());
    else if (bias) a = a + tape.parameter(bias_hh);  // h = 0 contributes only its bias
    return activate(options_.nonlinearity(), a);
}

template <class T>
RNN<T>::RNN(const RNNOptions& options, Generator& gen)
    : Module<T>("RNN"), options_(options), dropout_generator_(gen.next_u64()) {
    check_sizes("RNN", options.input_size(), options.hidden_size());
    if (options.num_layers() == 0) throw std::invalid_argument("RNN: num_layers must be at least 1");
    if (!(options.dropout() >= 0.0 && options.dropout() < 1.0)) {
        throw std::invalid_argument(fmt::format("RNN: dropout = {} is not in [0, 1)", options.dropout()));
    }
    const RNNSpec s = spec();
    const std::size_t H = s.hidden_size;
    const double bound = 1.0 / std::sqrt(static_cast<double>(H));
    for (std::size_t l = 0; l < s.num_layers; ++l) {
        for (std::size_t d = 0; d < s.directions(); ++d) {
            const std::string suffix = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
            auto add = [&](const char* name, const Shape& shape) {
                weights_.push_back(this->register_parameter(name + suffix, uniform<T>(shape, -bound, bound, gen)));
            };
            add("weight_ih", {H, s.layer_input_size(l)});
            add("weight_hh", {H, H});
            if (s.bias) {
                add("bias_ih", {H});
                add("bias_hh", {H});
            }
        }
    }
}

template <class T>
RNNSpec RNN<T>::spec() const {
    RNNSpec s;
    s.input_size = options_.input_size();
    s.hidden_size = options_.hidden_size();
    s.num_layers = options_.num_layers();
    s.bias = options_.bias();
    s.bidirectional = options_.bidirectional();
    s.nonlinearity = options_.nonlinearity();
    return s;
}

template <class T>
std::vector<Tensor<T>> RNN<T>::dropout_masks(std::size_t steps, std::size_t batch) {
    std::vector<Tensor<T>> masks;
    const double p = options_.dropout();
    if (!this->is_training() || p == 0.0) return masks;
    const RNNSpec s = spec();
    for (std::size_t l = 0; l + 1 < s.num_layers; ++l) {
        Tensor<T> m = bernoulli<T>({steps, batch, s.directions() * s.hidden_size}, 1.0 - p, dropout_generator_);
        m *= static_cast<T>(1.0 / (1.0 - p));
        masks.push_back(std::move(m));
    }
    return masks;
}

template <class T>
RNNOutput<T> RNN<T>::forward(const Var<T>& input, const Var<T>& h0, const std::vector<std::int64_t>& lengths) {
    const RNNSpec s = spec();
    const Shape h0_shape = h0.defined() ? h0.shape() : Shape{};
    check_rnn_args("RNN", s, input.shape(), options_.batch_first(), h0.defined() ? &h0_shape : nullptr, lengths);
    const Var<T> x = options_.batch_first() ? transpose(input, 0, 1) : input;
    const std::vector<Tensor<T>> masks = dropout_masks(x.shape()[0], x.shape()[1]);
    RNNOutput<T> result;
    tracked_hidden_.clear();
    if (options_.implementation() == RNNImplementation::graph) {
        result = forward_graph(x, h0, lengths, masks);
    } else {
        std::vector<Var<T>> params;
        for (const Parameter<T>& p : weights_) params.push_back(x.tape().parameter(p));
        fused_grad_norms_ = track_hidden_grads_ ? std::make_shared<Tensor<T>>() : nullptr;
        result = rnn_fused(s, x, h0, params, lengths, masks, fused_grad_norms_);
    }
    if (options_.batch_first()) result.output = transpose(result.output, 0, 1);
    return result;
}

// The seed's equations, one step at a time: a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, h_t = φ(a_t).
template <class T>
RNNOutput<T> RNN<T>::forward_graph(const Var<T>& x, const Var<T>& h0, const std::vector<std::int64_t>& lengths,
                                   const std::vector<Tensor<T>>& masks) {
    const RNNSpec s = spec();
    const std::size_t steps = x.shape()[0], batch = x.shape()[1], H = s.hidden_size, D = s.directions();
    const std::size_t per = s.bias ? 4 : 2;
    Tape<T>& tape = x.tape();
    // Which sequences are still running at step t, as a (B, 1) mask broadcast over the features.
    std::vector<xt::xarray<bool>> running;
    for (std::size_t t = 0; !lengths.empty() && t < steps; ++t) {
        xt::xarray<bool> m = xt::xarray<bool>::from_shape({batch, 1});
        for (std::size_t b = 0; b < batch; ++b) m(b, 0) = static_cast<std::int64_t>(t) < lengths[b];
        running.push_back(std::move(m));
    }
    Tensor<T> zeros = Tensor<T>::from_shape({batch, H});
    zeros.fill(T(0));
    const Var<T> zero_state = tape.leaf(zeros, false);
    if (track_hidden_grads_) tracked_hidden_.assign(s.num_layers * D * steps, Var<T>());

    Var<T> layer_input = x;
    std::vector<Var<T>> final_states;
    for (std::size_t l = 0; l < s.num_layers; ++l) {
        std::vector<std::vector<Var<T>>> outputs(D, std::vector<Var<T>>(steps));
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            auto param = [&](std::size_t i) { return tape.parameter(weights_[k * per + i]); };
            // All steps' input projections at once: (T, B, H).
            Var<T> projected = linear(layer_input, param(0), s.bias ? param(2) : Var<T>());
            if (s.bias) projected = projected + param(3);
            const Var<T> w_hh = param(1);
            Var<T> h = h0.defined() ? select(h0, 0, k) : zero_state;
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = d == 0 ? step : steps - 1 - step;
                const Var<T> h_new = activate(s.nonlinearity, select(projected, 0, t) + linear(h, w_hh));
                if (track_hidden_grads_) {
                    h_new.retain_grad();
                    tracked_hidden_[k * steps + t] = h_new;
                }
                if (lengths.empty()) {
                    outputs[d][t] = h_new;
                    h = h_new;
                } else {
                    outputs[d][t] = xgrad::where(running[t], h_new, zero_state);
                    h = xgrad::where(running[t], h_new, h);
                }
            }
            final_states.push_back(h);
        }
        std::vector<Var<T>> per_step(steps);
        for (std::size_t t = 0; t < steps; ++t) {
            per_step[t] = D == 1 ? outputs[0][t] : concat(std::vector<Var<T>>{outputs[0][t], outputs[1][t]}, -1);
        }
        Var<T> layer_output = stack(per_step, 0);
        if (l + 1 < s.num_layers && !masks.empty()) layer_output = layer_output * tape.leaf(masks[l], false);
        layer_input = layer_output;
    }
    return {layer_input, stack(final_states, 0)};
}

template <class T>
Tensor<T> RNN<T>::hidden_grad_norms() const {
    if (!track_hidden_grads_) throw std::logic_error("RNN::hidden_grad_norms: call track_hidden_grads(true) before forward");
    if (fused_grad_norms_) {
        if (fused_grad_norms_->size() == 0 || fused_grad_norms_->dimension() != 2) {
            throw std::logic_error("RNN::hidden_grad_norms: no backward has run since the last forward");
        }
        return *fused_grad_norms_;
    }
    if (tracked_hidden_.empty()) throw std::logic_error("RNN::hidden_grad_norms: no forward has run");
    const std::size_t kd = options_.num_layers() * (options_.bidirectional() ? 2 : 1);
    const std::size_t steps = tracked_hidden_.size() / kd;
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

template class RNNCell<float>;
template class RNNCell<double>;
template class RNN<float>;
template class RNN<double>;

}  // namespace xgrad::nn
