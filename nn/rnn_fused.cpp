// The fused kernel as one op of the autograd graph: its forward runs rnn_forward over the whole
// sequence, its backward is rnn_backward (the handwritten BPTT).
#include "rnn_fused.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

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
    const std::size_t per = spec.bias ? 4 : 2, H = spec.hidden_size, GH = spec.gates() * H;
    if (params.size() != per * spec.num_layers * spec.directions()) {
        throw std::invalid_argument(fmt::format("rnn_fused: {} parameters given, expected {}", params.size(),
                                                per * spec.num_layers * spec.directions()));
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
        const std::size_t k = i / per, which = i % per, layer = k / spec.directions();
        const Shape expected = which == 0 ? Shape{GH, spec.layer_input_size(layer)} : which == 1 ? Shape{GH, H} : Shape{GH};
        if (params[i].shape() != expected) {
            throw ShapeError(fmt::format("rnn_fused: parameter {} has shape {}, expected {}", i,
                                         shape_str(params[i].shape()), shape_str(expected)));
        }
    }
}
}  // namespace

template <class T>
LSTMOutput<T> rnn_fused(const RNNSpec& spec, const Var<T>& input, const Var<T>& h0, const Var<T>& c0,
                        const std::vector<Var<T>>& params, const std::vector<std::int64_t>& lengths,
                        std::vector<Tensor<T>> dropout_masks, std::shared_ptr<Tensor<T>> hidden_grad_norms,
                        const Indices* ids) {
    check_params(spec, params);
    if (!ids && !input.defined()) throw std::invalid_argument("rnn_fused: no input (neither a tensor nor indices)");
    std::vector<Var<T>> inputs;
    if (!ids) inputs.push_back(input);
    if (h0.defined()) inputs.push_back(h0);
    if (c0.defined()) inputs.push_back(c0);
    const std::size_t first_param = inputs.size();
    inputs.insert(inputs.end(), params.begin(), params.end());
    std::vector<const Tensor<T>*> values;
    for (const Var<T>& p : params) values.push_back(&p.value());

    auto cache = std::make_shared<RNNCache<T>>();
    const Tensor<T> none;
    RNNResult<T> r = rnn_forward(spec, weights_from(spec, values), ids ? none : input.value(),
                                 h0.defined() ? &h0.value() : nullptr, c0.defined() ? &c0.value() : nullptr, lengths,
                                 std::move(dropout_masks), *cache, ids);
    // One node holds output, h_n and c_n back to back; slices of it are the op's results.
    const std::size_t n_out = r.output.size(), n_state = r.h_n.size(), n_cell = r.c_n.dimension() == 3 ? r.c_n.size() : 0;
    Tensor<T> packed = Tensor<T>::from_shape({n_out + n_state + n_cell});
    std::copy_n(r.output.data(), n_out, packed.data());
    std::copy_n(r.h_n.data(), n_state, packed.data() + n_out);
    if (n_cell) std::copy_n(r.c_n.data(), n_cell, packed.data() + n_out + n_state);
    const bool has_input = !ids, has_h0 = h0.defined(), has_c0 = c0.defined();
    Var<T> node = params[0].tape().record("rnn_fused", std::move(packed), std::span<const Var<T>>(inputs),
                                          [spec, cache, n_out, n_state, n_cell, has_input, has_h0, has_c0, first_param,
                                           hidden_grad_norms](BackwardContext<T>& c) {
        std::vector<const Tensor<T>*> values;
        for (std::size_t i = first_param; i < c.num_inputs(); ++i) values.push_back(&c.input(i));
        const T* dy = c.output_grad().data();
        const bool need_input_grad = has_input && c.needs_grad(0);
        RNNGrads<T> g = rnn_backward(spec, weights_from(spec, values), *cache, dy, dy + n_out,
                                     n_cell ? dy + n_out + n_state : nullptr, need_input_grad);
        if (hidden_grad_norms) *hidden_grad_norms = g.hidden_grad_norms;
        std::size_t next = 0;
        if (has_input && need_input_grad) c.accumulate(0, std::move(g.input));
        next += has_input ? 1 : 0;
        if (has_h0) c.accumulate(next++, std::move(g.h0));
        if (has_c0) c.accumulate(next++, std::move(g.c0));
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
    LSTMOutput<T> out{reshape(narrow(node, 0, 0, n_out), {steps, batch, width}),
                     reshape(narrow(node, 0, n_out, n_state), {-1, batch, hidden}), Var<T>()};
    if (n_cell) out.c_n = reshape(narrow(node, 0, n_out + n_state, n_cell), {-1, batch, hidden});
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                                                       \
    template LSTMOutput<T> rnn_fused(const RNNSpec&, const Var<T>&, const Var<T>&, const Var<T>&,                  \
                                     const std::vector<Var<T>>&, const std::vector<std::int64_t>&,                 \
                                     std::vector<Tensor<T>>, std::shared_ptr<Tensor<T>>, const Indices*);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
