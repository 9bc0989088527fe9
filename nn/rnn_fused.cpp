// The fused kernel as one op of the autograd graph: its forward runs rnn_forward over the whole
// sequence, its backward is rnn_backward (the handwritten BPTT).
#include "rnn_fused.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

namespace {
// Each (layer, direction)'s parameters in the op's order, worked out once per call: the forward,
// the shape check and the backward all walk the same list.
using Layout = std::vector<std::vector<LayerParameter>>;

template <class T>
Layout layout_of(const FusedCell<T>& cell, const RNNSpec& spec) {
    const std::vector<CellParameter> declared = cell.parameters(spec.hidden_size);
    Layout layout;
    for (std::size_t k = 0; k < spec.num_layers * spec.directions(); ++k) {
        layout.push_back(layer_parameters(declared, cell.gates(), spec, k / spec.directions()));
    }
    return layout;
}

template <class T>
RNNWeights<T> weights_from(const Layout& layout, std::size_t n_cell, const std::vector<const Tensor<T>*>& values) {
    RNNWeights<T> w;
    std::size_t next = 0;
    for (const auto& per_direction : layout) {
        std::vector<const T*> own(n_cell, nullptr);
        for (const LayerParameter& p : per_direction) {
            const T* data = values[next++]->data();
            if (p.cell_index == LayerParameter::weight_ih) {
                w.weight_ih.push_back(data);
            } else if (p.cell_index == LayerParameter::bias_ih) {
                w.bias_ih.push_back(data);
            } else {
                own[static_cast<std::size_t>(p.cell_index)] = data;
            }
        }
        w.cell.push_back(std::move(own));
    }
    return w;
}

template <class T>
void check_params(const Layout& layout, const std::vector<Var<T>>& params) {
    std::size_t i = 0;
    for (const auto& per_direction : layout) {
        for (const LayerParameter& p : per_direction) {
            if (i >= params.size()) {
                throw std::invalid_argument(fmt::format("rnn_fused: {} parameters given, fewer than the layer has", params.size()));
            }
            if (params[i].shape() != p.shape) {
                throw ShapeError(fmt::format("rnn_fused: parameter {} ({}) has shape {}, expected {}", i, p.name,
                                             shape_str(params[i].shape()), shape_str(p.shape)));
            }
            ++i;
        }
    }
    if (i != params.size()) throw std::invalid_argument(fmt::format("rnn_fused: {} parameters given, expected {}", params.size(), i));
}
}  // namespace

template <class T>
RecurrentOutput<T> rnn_fused(std::shared_ptr<const FusedCell<T>> cell, const RNNSpec& spec, const Var<T>& input,
                             const std::vector<Var<T>>& initial_states, const std::vector<Var<T>>& params,
                             const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                             std::shared_ptr<Tensor<T>> hidden_grad_norms, const Indices* ids) {
    if (!cell) throw std::invalid_argument("rnn_fused: no cell given (null)");
    const auto layout = std::make_shared<const Layout>(layout_of(*cell, spec));
    const std::size_t n_cell = cell->parameters(spec.hidden_size).size();
    check_params(*layout, params);
    if (!ids && !input.defined()) throw std::invalid_argument("rnn_fused: no input (neither a tensor nor indices)");
    const std::size_t S = cell->states();
    if (initial_states.size() > S) {
        throw std::invalid_argument(fmt::format("rnn_fused: {} initial states for the {} cell, which has {}",
                                                initial_states.size(), cell->name(), S));
    }
    // The op's inputs: the input (unless indices), the given initial states, then the parameters.
    std::vector<Var<T>> inputs;
    if (!ids) inputs.push_back(input);
    std::vector<std::ptrdiff_t> state_input(S, -1);
    std::vector<const Tensor<T>*> initial(S, nullptr);
    for (std::size_t i = 0; i < initial_states.size(); ++i) {
        if (!initial_states[i].defined()) continue;
        state_input[i] = static_cast<std::ptrdiff_t>(inputs.size());
        initial[i] = &initial_states[i].value();
        inputs.push_back(initial_states[i]);
    }
    const std::size_t first_param = inputs.size();
    inputs.insert(inputs.end(), params.begin(), params.end());
    std::vector<const Tensor<T>*> values;
    for (const Var<T>& p : params) values.push_back(&p.value());

    auto cache = std::make_shared<RNNCache<T>>();
    const Tensor<T> none;
    RNNResult<T> r = rnn_forward(*cell, spec, weights_from(*layout, n_cell, values), ids ? none : input.value(), initial,
                                 lengths, std::move(dropout_masks), *cache, ids);
    // The op's node holds the output itself (moved, not copied); each final state is a small node
    // after it whose backward only leaves its gradient in `d_states` for the op's backward, which the
    // tape's reverse order runs later.
    auto d_states = std::make_shared<std::vector<Tensor<T>>>(S);
    const bool has_input = !ids;
    Tape<T>& tape = params[0].tape();
    Saves saves;  // the weights; the cache holds the rest
    for (std::size_t i = first_param; i < inputs.size(); ++i) saves = saves | Saves::input(i);
    Var<T> node = tape.record("rnn_fused", std::move(r.output), std::span<const Var<T>>(inputs),
                              [cell, spec, cache, layout, n_cell, d_states, has_input, state_input, first_param,
                               hidden_grad_norms](BackwardContext<T>& c) {
        std::vector<const Tensor<T>*> values;
        for (std::size_t i = first_param; i < c.num_inputs(); ++i) values.push_back(&c.input(i));
        std::vector<const T*> d_final;
        for (const Tensor<T>& d : *d_states) d_final.push_back(d.dimension() == 3 ? d.data() : nullptr);  // unused state: zero
        const bool need_input_grad = has_input && c.needs_grad(0);
        // Without retain_graph this backward is the cache's last reader: it may spend it.
        const RNNWeights<T> w = weights_from(*layout, n_cell, values);
        RNNGrads<T> g = c.retain_graph() ? rnn_backward(*cell, spec, w, *cache, c.output_grad().data(), d_final, need_input_grad)
                                         : rnn_backward(*cell, spec, w, std::move(*cache), c.output_grad().data(), d_final,
                                                        need_input_grad);
        if (hidden_grad_norms) *hidden_grad_norms = g.hidden_grad_norms;
        if (need_input_grad) c.accumulate(0, std::move(g.input));
        for (std::size_t i = 0; i < state_input.size(); ++i) {
            if (state_input[i] >= 0) c.accumulate(static_cast<std::size_t>(state_input[i]), std::move(g.initial_states[i]));
        }
        std::size_t next = first_param;
        for (std::size_t k = 0; k < g.weight_ih.size(); ++k) {
            for (const LayerParameter& p : (*layout)[k]) {
                Tensor<T>& grad = p.cell_index == LayerParameter::weight_ih ? g.weight_ih[k]
                                  : p.cell_index == LayerParameter::bias_ih ? g.bias_ih[k]
                                                                            : g.cell[k][static_cast<std::size_t>(p.cell_index)];
                c.accumulate(next++, std::move(grad));
            }
        }
    }, saves);
    RecurrentOutput<T> out{node, {}};
    for (std::size_t i = 0; i < S; ++i) {
        const Var<T> parent[] = {node};
        out.states.push_back(tape.record("rnn_fused_state", std::move(r.final_states[i]), std::span<const Var<T>>(parent),
                                         [d_states, i](BackwardContext<T>& c) {
            (*d_states)[i] = c.output_grad();
            if (c.needs_grad(0)) c.input_grad(0);  // the op's backward must run even when only a state is used (zero d_output)
        }, Saves::nothing()));
    }
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                                                           \
    template RecurrentOutput<T> rnn_fused(std::shared_ptr<const FusedCell<T>>, const RNNSpec&, const Var<T>&,          \
                                          const std::vector<Var<T>>&, const std::vector<Var<T>>&,                      \
                                          const std::vector<std::int64_t>&, std::vector<Tensor<T>>,                    \
                                          std::shared_ptr<Tensor<T>>, const Indices*);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
