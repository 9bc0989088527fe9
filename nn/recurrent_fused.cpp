// The fused kernel as one op of the autograd graph: its forward runs recurrent_forward over the whole
// sequence, its backward is recurrent_backward (the handwritten BPTT).
#include "recurrent_fused.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "../autograd/ops.hpp"
#include "recurrent_kernel.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

namespace {
// Parameters must be those of the layer the spec and cell describe, slot by slot.
template <class T>
void check_params(const FusedCell<T>& cell, const RecurrentSpec& spec, const std::vector<DirectionParameters<Var<T>>>& params) {
    const std::size_t n = spec.num_layers * spec.directions();
    if (n == 0) throw std::invalid_argument("recurrent_fused: num_layers must be at least 1");
    if (params.size() != n) {
        throw std::invalid_argument(fmt::format("recurrent_fused: parameters for {} (layer, direction) pairs given, expected {}",
                                                params.size(), n));
    }
    const std::vector<CellParameter> declared = cell.parameters(spec.hidden_size);
    for (std::size_t k = 0; k < n; ++k) {
        if (params[k].cell.size() != declared.size()) {
            throw std::invalid_argument(fmt::format("recurrent_fused: {} cell parameters given for (layer, direction) {}, the {} cell "
                                                    "declares {}", params[k].cell.size(), k, cell.name(), declared.size()));
        }
        DirectionParameters<Var<T>> given = params[k];
        std::size_t expected = 0, defined = 0;
        for_each_registered(given, declared, cell.gates(), spec, k / spec.directions(),
                            [&](const std::string& name, const Shape& shape, const Var<T>& p) {
            ++expected;
            if (!p.defined()) {
                throw std::invalid_argument(fmt::format("recurrent_fused: {} of (layer, direction) {} is missing", name, k));
            }
            if (p.shape() != shape) {
                throw ShapeError(fmt::format("recurrent_fused: {} of (layer, direction) {} has shape {}, expected {}", name, k,
                                             shape_str(p.shape()), shape_str(shape)));
            }
        });
        for (const Var<T>* p : slots(given)) defined += p->defined();
        if (defined != expected) {
            throw std::invalid_argument(fmt::format("recurrent_fused: (layer, direction) {} has {} parameters given, the layer "
                                                    "has {} (biases given without bias?)", k, defined, expected));
        }
    }
}

// Where each parameter input of the op sits: its (layer, direction) and its slot there (see slots()).
struct ParameterSlot {
    std::size_t direction, slot;
};

// The kernel's pointers to the op's parameter inputs, value_of(i) being the i-th.
template <class T, class ValueOf>
RecurrentWeights<T> weights_of(std::size_t directions, std::size_t cell_parameters, const std::vector<ParameterSlot>& where,
                               ValueOf&& value_of) {
    RecurrentWeights<T> w(directions);
    for (DirectionParameters<const T*>& p : w) p.cell.assign(cell_parameters, nullptr);
    for (std::size_t i = 0; i < where.size(); ++i) *slots(w[where[i].direction])[where[i].slot] = value_of(i).data();
    return w;
}

}  // namespace

template <class T>
RecurrentOutput<T> recurrent_fused(std::shared_ptr<const FusedCell<T>> cell, const RecurrentSpec& spec, const Var<T>& input,
                                   const std::vector<Var<T>>& initial_states, const std::vector<DirectionParameters<Var<T>>>& params,
                                   const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                                   std::shared_ptr<Tensor<T>> hidden_grad_norms, const Indices* ids) {
    if (!cell) throw std::invalid_argument("recurrent_fused: no cell given (null)");
    check_params(*cell, spec, params);
    if (!ids && !input.defined()) throw std::invalid_argument("recurrent_fused: no input (neither a tensor nor indices)");
    const std::size_t S = cell->states();
    if (initial_states.size() > S) {
        throw std::invalid_argument(fmt::format("recurrent_fused: {} initial states for the {} cell, which has {}",
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
    auto where = std::make_shared<std::vector<ParameterSlot>>();
    for (std::size_t k = 0; k < params.size(); ++k) {
        const std::vector<const Var<T>*> direction = slots(params[k]);
        for (std::size_t j = 0; j < direction.size(); ++j) {
            if (!direction[j]->defined()) continue;
            where->push_back({k, j});
            inputs.push_back(*direction[j]);
        }
    }
    const std::size_t n_cell = params[0].cell.size();
    auto value_of = [&](std::size_t i) -> const Tensor<T>& { return inputs[first_param + i].value(); };

    auto cache = std::make_shared<RecurrentCache<T>>();
    const Tensor<T> none;
    RecurrentResult<T> r = recurrent_forward(*cell, spec, weights_of<T>(params.size(), n_cell, *where, value_of),
                                             ids ? none : input.value(), initial, lengths, std::move(dropout_masks), *cache, ids);
    // The op's node holds the output itself (moved, not copied); each final state is a small node
    // after it whose backward only leaves its gradient in `d_states` for the op's backward, which the
    // tape's reverse order runs later.
    auto d_states = std::make_shared<std::vector<Tensor<T>>>(S);
    const bool has_input = !ids;
    Tape<T>& tape = params[0].weight_ih.tape();
    Saves saves;  // the weights; the cache holds the rest
    for (std::size_t i = first_param; i < inputs.size(); ++i) saves = saves | Saves::input(i);
    Var<T> node = tape.record("recurrent_fused", std::move(r.output), std::span<const Var<T>>(inputs),
                              [cell, spec, cache, where, n_cell, directions = params.size(), d_states, has_input, state_input,
                               first_param, hidden_grad_norms](BackwardContext<T>& c) {
        std::vector<const T*> d_final;
        for (const Tensor<T>& d : *d_states) d_final.push_back(d.dimension() == 3 ? d.data() : nullptr);  // unused state: zero
        const bool need_input_grad = has_input && c.needs_grad(0);
        const RecurrentWeights<T> w = weights_of<T>(directions, n_cell, *where,
                                                    [&](std::size_t i) -> const Tensor<T>& { return c.input(first_param + i); });
        // Without retain_graph this backward is the cache's last reader: it may spend it.
        RecurrentGrads<T> g = c.retain_graph()
                                  ? recurrent_backward(*cell, spec, w, *cache, c.output_grad().data(), d_final, need_input_grad)
                                  : recurrent_backward(*cell, spec, w, std::move(*cache), c.output_grad().data(), d_final,
                                                       need_input_grad);
        if (hidden_grad_norms) *hidden_grad_norms = g.hidden_grad_norms;
        if (need_input_grad) c.accumulate(0, std::move(g.input));
        for (std::size_t i = 0; i < state_input.size(); ++i) {
            if (state_input[i] >= 0) c.accumulate(static_cast<std::size_t>(state_input[i]), std::move(g.initial_states[i]));
        }
        for (std::size_t i = 0; i < where->size(); ++i) {
            const ParameterSlot& at = (*where)[i];
            c.accumulate(first_param + i, std::move(*slots(g.params[at.direction])[at.slot]));
        }
    }, saves);
    RecurrentOutput<T> out{node, {}, {}};
    for (std::size_t i = 0; i < S; ++i) {
        const Var<T> parent[] = {node};
        out.states.push_back(tape.record("recurrent_fused_state", std::move(r.final_states[i]), std::span<const Var<T>>(parent),
                                         [d_states, i](BackwardContext<T>& c) {
            (*d_states)[i] = c.output_grad();
            if (c.needs_grad(0)) c.input_grad(0);  // the op's backward must run even when only a state is used (zero d_output)
        }, Saves::nothing()));
    }
    out.h_n = out.states[0];
    return out;
}

#define RECURRENT_FUSED_INSTANCES(T)                                                                                           \
    template RecurrentOutput<T> recurrent_fused(std::shared_ptr<const FusedCell<T>>, const RecurrentSpec&, const Var<T>&, \
                                          const std::vector<Var<T>>&, const std::vector<DirectionParameters<Var<T>>>&, \
                                          const std::vector<std::int64_t>&, std::vector<Tensor<T>>,                    \
                                          std::shared_ptr<Tensor<T>>, const Indices*);
XGRAD_FOR_FLOAT_AND_DOUBLE(RECURRENT_FUSED_INSTANCES)

}  // namespace xgrad::nn
