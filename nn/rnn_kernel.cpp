// The fused Elman RNN: GEMMs into preallocated buffers, elementwise work in plain loops.
#include "rnn_kernel.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "../autograd/ops.hpp"
#include "../tensor/linalg.hpp"

namespace xgrad::nn {

void check_rnn_args(std::string_view who, const RNNSpec& spec, const Shape& input, bool batch_first,
                    const Shape* h0, const std::vector<std::int64_t>& lengths) {
    const char* layout = batch_first ? "(batch, seq_len, input_size)" : "(seq_len, batch, input_size)";
    if (input.size() != 3) {
        throw ShapeError(fmt::format("{}: input must be 3-D {}, got {}", who, layout, shape_str(input)));
    }
    const std::size_t steps = batch_first ? input[1] : input[0], batch = batch_first ? input[0] : input[1];
    if (input[2] != spec.input_size) {
        throw ShapeError(fmt::format("{}: input {} has {} features, expected input_size {}", who, shape_str(input),
                                     input[2], spec.input_size));
    }
    if (steps == 0 || batch == 0) {
        throw ShapeError(fmt::format("{}: input {} {} has no time steps or no sequences", who, layout, shape_str(input)));
    }
    const Shape state = {spec.num_layers * spec.directions(), batch, spec.hidden_size};
    if (h0 && *h0 != state) {
        throw ShapeError(fmt::format("{}: h0 must have shape {} (num_layers * directions, batch, hidden_size), got {}",
                                     who, shape_str(state), shape_str(*h0)));
    }
    if (!lengths.empty() && lengths.size() != batch) {
        throw std::invalid_argument(
            fmt::format("{}: lengths has {} entries for a batch of {} (input {})", who, lengths.size(), batch,
                        shape_str(input)));
    }
    for (std::size_t b = 0; b < lengths.size(); ++b) {
        if (lengths[b] < 0 || static_cast<std::size_t>(lengths[b]) > steps) {
            throw std::invalid_argument(fmt::format("{}: lengths[{}] = {} is out of range [0, {}] for input {}", who, b,
                                                    lengths[b], steps, shape_str(input)));
        }
    }
}

namespace {
template <class T>
T activate(Nonlinearity f, T a) {
    return f == Nonlinearity::tanh ? std::tanh(a) : std::max(a, T(0));
}

// φ'(a) from h = φ(a): 1 - h² for tanh, [h > 0] for relu.
template <class T>
T derivative_from_output(Nonlinearity f, T h) {
    return f == Nonlinearity::tanh ? T(1) - h * h : (h > T(0) ? T(1) : T(0));
}

void resize(auto& tensor, const Shape& shape) {
    if (!std::equal(tensor.shape().begin(), tensor.shape().end(), shape.begin(), shape.end())) tensor.resize(shape);
}
}  // namespace

template <class T>
RNNResult<T> rnn_forward(const RNNSpec& spec, const RNNWeights<T>& w, const Tensor<T>& input, const Tensor<T>* h0,
                         const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                         RNNCache<T>& cache) {
    const Shape h0_shape = h0 ? shape_of(*h0) : Shape{};
    check_rnn_args("rnn_forward", spec, shape_of(input), false, h0 ? &h0_shape : nullptr, lengths);
    const std::size_t steps = input.shape(0), batch = input.shape(1), H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H;
    if (!dropout_masks.empty() && dropout_masks.size() + 1 != L) {
        throw std::invalid_argument(fmt::format("rnn_forward: {} dropout masks for {} layers (need num_layers - 1)",
                                                dropout_masks.size(), L));
    }
    cache.steps = steps;
    cache.batch = batch;
    cache.lengths = lengths.empty() ? std::vector<std::int64_t>(batch, static_cast<std::int64_t>(steps)) : lengths;
    cache.layer_inputs.resize(L);
    cache.states.resize(L * D);
    cache.dropout_masks = std::move(dropout_masks);
    cache.layer_inputs[0] = input;

    RNNResult<T> result;
    result.h_n = Tensor<T>::from_shape({L * D, batch, H});
    std::vector<T> bias(H);
    for (std::size_t l = 0; l < L; ++l) {
        const Tensor<T>& x = cache.layer_inputs[l];
        const std::size_t in = spec.layer_input_size(l);
        Tensor<T> out = Tensor<T>::from_shape({steps, batch, D * H});
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            const bool forward = d == 0;
            Tensor<T>& states = cache.states[k];
            resize(states, {steps + 1, batch, H});
            T* s = states.data();
            T* initial = s + (forward ? 0 : steps) * row;
            if (h0) {
                std::copy_n(h0->data() + k * row, row, initial);
            } else {
                std::fill_n(initial, row, T(0));
            }
            // Every step's input projection in one GEMM, straight into the slots its states will fill.
            T* first_step = s + (forward ? row : 0);
            gemm_raw<T>(false, true, steps * batch, H, in, T(1), x.data(), in, w.weight_ih[k], in, T(0), first_step, H);
            if (spec.bias) {
                for (std::size_t j = 0; j < H; ++j) bias[j] = w.bias_ih[k][j] + w.bias_hh[k][j];
                for (std::size_t r = 0; r < steps * batch; ++r)
                    for (std::size_t j = 0; j < H; ++j) first_step[r * H + j] += bias[j];
            }
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = forward ? step : steps - 1 - step;
                T* cur = s + (forward ? t + 1 : t) * row;
                const T* prev = s + (forward ? t : t + 1) * row;
                gemm_raw<T>(false, true, batch, H, H, T(1), prev, H, w.weight_hh[k], H, T(1), cur, H);
                for (std::size_t b = 0; b < batch; ++b) {
                    T* o = out.data() + (t * batch + b) * D * H + d * H;
                    if (static_cast<std::int64_t>(t) < cache.lengths[b]) {
                        for (std::size_t j = 0; j < H; ++j) o[j] = cur[b * H + j] = activate(spec.nonlinearity, cur[b * H + j]);
                    } else {  // past this sequence's end: carry the state, output zero
                        std::copy_n(prev + b * H, H, cur + b * H);
                        std::fill_n(o, H, T(0));
                    }
                }
            }
            std::copy_n(s + (forward ? steps : 0) * row, row, result.h_n.data() + k * row);
        }
        if (l + 1 < L) {
            if (!cache.dropout_masks.empty()) out *= cache.dropout_masks[l];
            cache.layer_inputs[l + 1] = std::move(out);
        } else {
            result.output = std::move(out);
        }
    }
    return result;
}

template <class T>
RNNGrads<T> rnn_backward(const RNNSpec& spec, const RNNWeights<T>& w, const RNNCache<T>& cache, const T* d_output,
                         const T* d_h_n) {
    const std::size_t steps = cache.steps, batch = cache.batch, H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H;
    if (cache.states.size() != L * D || steps == 0) {
        throw std::invalid_argument("rnn_backward: the cache does not come from rnn_forward with this spec");
    }
    RNNGrads<T> g;
    g.h0 = Tensor<T>::from_shape({L * D, batch, H});
    g.hidden_grad_norms = Tensor<T>::from_shape({L * D, steps});
    g.weight_ih.resize(L * D);
    g.weight_hh.resize(L * D);
    if (spec.bias) {
        g.bias_ih.resize(L * D);
        g.bias_hh.resize(L * D);
    }
    // The gradient flowing into the current layer's output; a copy, so the caller's stays intact.
    Tensor<T> d_out = Tensor<T>::from_shape({steps, batch, D * H});
    if (d_output) {
        std::copy_n(d_output, d_out.size(), d_out.data());
    } else {
        d_out.fill(T(0));
    }
    Tensor<T> d_a = Tensor<T>::from_shape({steps, batch, H});
    std::vector<T> dh(row), dh_next(row);

    for (std::size_t l = L; l-- > 0;) {
        const std::size_t in = spec.layer_input_size(l);
        const Tensor<T>& x = cache.layer_inputs[l];
        Tensor<T> d_x = Tensor<T>::from_shape({steps, batch, in});
        d_x.fill(T(0));
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            const bool forward = d == 0;
            const T* s = cache.states[k].data();
            if (d_h_n) {
                std::copy_n(d_h_n + k * row, row, dh.begin());
            } else {
                std::fill(dh.begin(), dh.end(), T(0));
            }
            // Walk the steps in the reverse of the order forward took them.
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = forward ? steps - 1 - step : step;
                const T* cur = s + (forward ? t + 1 : t) * row;
                T* da = d_a.data() + t * row;
                T norm2 = 0;
                for (std::size_t b = 0; b < batch; ++b) {
                    if (static_cast<std::int64_t>(t) < cache.lengths[b]) {
                        const T* dout = d_out.data() + (t * batch + b) * D * H + d * H;
                        for (std::size_t j = 0; j < H; ++j) {
                            const T delta_h = dh[b * H + j] + dout[j];
                            norm2 += delta_h * delta_h;
                            da[b * H + j] = delta_h * derivative_from_output(spec.nonlinearity, cur[b * H + j]);
                        }
                    } else {
                        std::fill_n(da + b * H, H, T(0));
                    }
                }
                g.hidden_grad_norms(k, t) = std::sqrt(norm2);
                gemm_raw<T>(false, false, batch, H, H, T(1), da, H, w.weight_hh[k], H, T(0), dh_next.data(), H);
                for (std::size_t b = 0; b < batch; ++b) {  // a carried state passes its gradient straight back
                    if (static_cast<std::int64_t>(t) >= cache.lengths[b]) {
                        std::copy_n(dh.begin() + static_cast<std::ptrdiff_t>(b * H), H,
                                    dh_next.begin() + static_cast<std::ptrdiff_t>(b * H));
                    }
                }
                std::swap(dh, dh_next);
            }
            std::copy(dh.begin(), dh.end(), g.h0.data() + k * row);
            // Weight gradients over all steps at once: δA (T*B, H) against the inputs and previous states.
            const T* previous = s + (forward ? 0 : row);
            g.weight_hh[k] = Tensor<T>::from_shape({H, H});
            gemm_raw<T>(true, false, H, H, steps * batch, T(1), d_a.data(), H, previous, H, T(0), g.weight_hh[k].data(), H);
            g.weight_ih[k] = Tensor<T>::from_shape({H, in});
            gemm_raw<T>(true, false, H, in, steps * batch, T(1), d_a.data(), H, x.data(), in, T(0),
                        g.weight_ih[k].data(), in);
            if (spec.bias) {
                g.bias_ih[k] = Tensor<T>::from_shape({H});
                g.bias_ih[k].fill(T(0));
                for (std::size_t r = 0; r < steps * batch; ++r)
                    for (std::size_t j = 0; j < H; ++j) g.bias_ih[k](j) += d_a.data()[r * H + j];
                g.bias_hh[k] = g.bias_ih[k];
            }
            gemm_raw<T>(false, false, steps * batch, in, H, T(1), d_a.data(), H, w.weight_ih[k], in, T(1), d_x.data(), in);
        }
        if (l > 0) {
            if (!cache.dropout_masks.empty()) d_x *= cache.dropout_masks[l - 1];
            d_out = std::move(d_x);
        } else {
            g.input = std::move(d_x);
        }
    }
    return g;
}

namespace {
template <class T>
RNNWeights<T> weights_from(const RNNSpec& spec, const std::vector<const Tensor<T>*>& params) {
    const std::size_t per = spec.bias ? 4 : 2;
    RNNWeights<T> w;
    for (std::size_t k = 0; k < spec.num_layers * spec.directions(); ++k) {
        w.weight_ih.push_back(params[k * per]->data());
        w.weight_hh.push_back(params[k * per + 1]->data());
        if (spec.bias) {
            w.bias_ih.push_back(params[k * per + 2]->data());
            w.bias_hh.push_back(params[k * per + 3]->data());
        }
    }
    return w;
}

template <class T>
void check_params(const RNNSpec& spec, const std::vector<Var<T>>& params) {
    const std::size_t per = spec.bias ? 4 : 2, H = spec.hidden_size;
    if (params.size() != per * spec.num_layers * spec.directions()) {
        throw std::invalid_argument(fmt::format("rnn_fused: {} parameters given, expected {}", params.size(),
                                                per * spec.num_layers * spec.directions()));
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
        const std::size_t k = i / per, which = i % per, layer = k / spec.directions();
        const Shape expected = which == 0 ? Shape{H, spec.layer_input_size(layer)} : which == 1 ? Shape{H, H} : Shape{H};
        if (params[i].shape() != expected) {
            throw ShapeError(fmt::format("rnn_fused: parameter {} has shape {}, expected {}", i,
                                         shape_str(params[i].shape()), shape_str(expected)));
        }
    }
}
}  // namespace

template <class T>
RNNOutput<T> rnn_fused(const RNNSpec& spec, const Var<T>& input, const Var<T>& h0, const std::vector<Var<T>>& params,
                       const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                       std::shared_ptr<Tensor<T>> hidden_grad_norms) {
    check_params(spec, params);
    std::vector<Var<T>> inputs = {input};
    if (h0.defined()) inputs.push_back(h0);
    inputs.insert(inputs.end(), params.begin(), params.end());
    std::vector<const Tensor<T>*> values;
    for (const Var<T>& p : params) values.push_back(&p.value());

    auto cache = std::make_shared<RNNCache<T>>();
    RNNResult<T> r = rnn_forward(spec, weights_from(spec, values), input.value(),
                                 h0.defined() ? &h0.value() : nullptr, lengths, std::move(dropout_masks), *cache);
    // One node holds output and h_n back to back; two slices of it are the op's results.
    const std::size_t n_out = r.output.size(), n_state = r.h_n.size();
    Tensor<T> packed = Tensor<T>::from_shape({n_out + n_state});
    std::copy_n(r.output.data(), n_out, packed.data());
    std::copy_n(r.h_n.data(), n_state, packed.data() + n_out);
    const bool has_h0 = h0.defined();
    Var<T> node = input.tape().record("rnn_fused", std::move(packed), std::span<const Var<T>>(inputs),
                                      [spec, cache, n_out, has_h0, hidden_grad_norms](BackwardContext<T>& c) {
        const std::size_t first_param = has_h0 ? 2 : 1;
        std::vector<const Tensor<T>*> values;
        for (std::size_t i = first_param; i < c.num_inputs(); ++i) values.push_back(&c.input(i));
        const T* dy = c.output_grad().data();
        RNNGrads<T> g = rnn_backward(spec, weights_from(spec, values), *cache, dy, dy + n_out);
        if (hidden_grad_norms) *hidden_grad_norms = g.hidden_grad_norms;
        c.accumulate(0, std::move(g.input));
        if (has_h0) c.accumulate(1, std::move(g.h0));
        const std::size_t per = spec.bias ? 4 : 2;
        for (std::size_t k = 0; k < g.weight_ih.size(); ++k) {
            c.accumulate(first_param + k * per, std::move(g.weight_ih[k]));
            c.accumulate(first_param + k * per + 1, std::move(g.weight_hh[k]));
            if (spec.bias) {
                c.accumulate(first_param + k * per + 2, std::move(g.bias_ih[k]));
                c.accumulate(first_param + k * per + 3, std::move(g.bias_hh[k]));
            }
        }
    });
    const auto steps = static_cast<std::ptrdiff_t>(r.output.shape(0)), batch = static_cast<std::ptrdiff_t>(r.output.shape(1));
    const auto width = static_cast<std::ptrdiff_t>(r.output.shape(2)), hidden = static_cast<std::ptrdiff_t>(spec.hidden_size);
    return {reshape(narrow(node, 0, 0, n_out), {steps, batch, width}),
            reshape(narrow(node, 0, n_out, n_state), {-1, batch, hidden})};
}

#define XGRAD_INSTANTIATE(T)                                                                                       \
    template RNNResult<T> rnn_forward(const RNNSpec&, const RNNWeights<T>&, const Tensor<T>&, const Tensor<T>*,    \
                                      const std::vector<std::int64_t>&, std::vector<Tensor<T>>, RNNCache<T>&);     \
    template RNNGrads<T> rnn_backward(const RNNSpec&, const RNNWeights<T>&, const RNNCache<T>&, const T*, const T*); \
    template RNNOutput<T> rnn_fused(const RNNSpec&, const Var<T>&, const Var<T>&, const std::vector<Var<T>>&,       \
                                    const std::vector<std::int64_t>&, std::vector<Tensor<T>>,                      \
                                    std::shared_ptr<Tensor<T>>);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
