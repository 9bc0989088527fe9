// The fused kernel forward: GEMMs into preallocated buffers around the cell's elementwise rows,
// composed as a stack of layers, each of one or two directions, each a run over time.
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "../tensor/linalg.hpp"
#include "recurrent_kernel_parts.hpp"

namespace xgrad::nn {

namespace {
using kernel::RowScratch;

// What every (layer, direction) of one call reads.
template <class T>
struct ForwardCall {
    const FusedCell<T>& cell;
    const RecurrentSpec& spec;
    const RecurrentWeights<T>& weights;
    const std::vector<const Tensor<T>*>& initial_states;
    kernel::RecurrentIndices rec;
    std::size_t steps, batch;
    bool split;  // a step's rows across threads
};

// One direction of one layer over time, from its input x (or the cache's ids, layer 0) into its
// half of `out` (T, B, directions * H), its states and gates into the cache, its final states into
// `final_states`. `recurrent` and `scratch` are the call's buffers, reused by every direction.
template <class T>
void forward_direction(const ForwardCall<T>& call, std::size_t layer, std::size_t direction, RecurrentCache<T>& cache,
                       Tensor<T>& out, std::vector<Tensor<T>>& final_states, std::vector<T>& recurrent,
                       std::vector<RowScratch<T>>& scratch) {
    const FusedCell<T>& cell = call.cell;
    const std::size_t steps = call.steps, batch = call.batch, H = call.spec.hidden_size, D = call.spec.directions();
    const std::size_t S = cell.states(), row = batch * H, GH = cell.gates() * H, saved = cell.saved_per_row(H);
    const std::size_t k = layer * D + direction;
    const kernel::Slots slot{steps, row, direction == 0};
    const DirectionParameters<const T*>& w = call.weights[k];
    const RecurrentGemm gemm = cell.recurrent_gemm();
    std::vector<T*> state(S);
    for (std::size_t i = 0; i < S; ++i) {
        Tensor<T>& buffer = cache.states[k * S + i];
        kernel::resize(buffer, {steps + 1, batch, H});
        state[i] = buffer.data();
        const Tensor<T>* initial = i < call.initial_states.size() ? call.initial_states[i] : nullptr;
        if (initial) {
            std::copy_n(initial->data() + k * row, row, state[i] + slot.initial());
        } else {
            std::fill_n(state[i] + slot.initial(), row, T(0));
        }
    }
    kernel::resize(cache.gates[k], {steps, batch, GH});
    if (saved) kernel::resize(cache.saved[k], {steps, batch, saved});
    T* gates = cache.gates[k].data();
    // Every step's input projection at once; with into_gates, both biases are folded in here.
    const bool one_hot = layer == 0 && cache.one_hot;
    const kernel::InputProjection<T> projection{w.weight_ih, GH, call.spec.layer_input_size(layer), steps * batch,
                                                one_hot ? &cache.ids : nullptr};
    projection.forward(cache.layer_inputs[layer].data(), gates);
    const T* b_hh = call.rec.has_bias && call.spec.bias ? w.cell[call.rec.bias] : nullptr;
    if (call.spec.bias) {
        const bool fold = gemm == RecurrentGemm::into_gates && b_hh;
        for (std::size_t r = 0; r < steps * batch; ++r)
            for (std::size_t j = 0; j < GH; ++j) gates[r * GH + j] += w.bias_ih[j] + (fold ? b_hh[j] : T(0));
    }
    std::optional<PrepackedGemm<T>> step_product;  // h_{t-1} W_hhᵀ, every step against the same W_hh
    if (gemm != RecurrentGemm::none) step_product.emplace(batch, GH, H, w.cell[call.rec.weight], true, H, GH);
    for (std::size_t step = 0; step < steps; ++step) {
        const std::size_t t = slot.forward ? step : steps - 1 - step;
        const T* h_prev = state[0] + slot.before(t);
        T* gates_t = gates + t * batch * GH;
        if (gemm == RecurrentGemm::into_gates) {
            (*step_product)(h_prev, gates_t, true);
        } else if (gemm == RecurrentGemm::separate) {
            (*step_product)(h_prev, recurrent.data(), false);
            if (b_hh) {
                for (std::size_t b = 0; b < batch; ++b)
                    for (std::size_t j = 0; j < GH; ++j) recurrent[b * GH + j] += b_hh[j];
            }
        }
        kernel::over_rows(batch, call.split, scratch, [&](std::size_t first, std::size_t last, RowScratch<T>& own) {
            std::vector<const T*>& previous = own.previous;
            std::vector<T*>& next = own.next;
            for (std::size_t b = first; b < last; ++b) {
                T* o = out.data() + (t * batch + b) * D * H + direction * H;
                for (std::size_t i = 0; i < S; ++i) {
                    previous[i] = state[i] + slot.before(t) + b * H;
                    next[i] = state[i] + slot.after(t) + b * H;
                }
                if (static_cast<std::int64_t>(t) < cache.lengths[b]) {
                    cell.forward_row({H, gates_t + b * GH, gemm == RecurrentGemm::separate ? recurrent.data() + b * GH : nullptr,
                                      saved ? cache.saved[k].data() + (t * batch + b) * saved : nullptr, previous, next,
                                      w.cell});
                    std::copy_n(next[0], H, o);
                } else {  // past this sequence's end: carry the states, output zero
                    for (std::size_t i = 0; i < S; ++i) std::copy_n(previous[i], H, next[i]);
                    std::fill_n(o, H, T(0));
                }
            }
            return T(0);
        });
    }
    for (std::size_t i = 0; i < S; ++i) std::copy_n(state[i] + slot.final(), row, final_states[i].data() + k * row);
    if (!cell.backward_reads_gates()) cache.gates[k] = Tensor<T>();
}
}  // namespace

template <class T>
RecurrentResult<T> recurrent_forward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& w,
                                     const Tensor<T>& input, const std::vector<const Tensor<T>*>& initial_states,
                                     const std::vector<std::int64_t>& lengths, std::vector<Tensor<T>> dropout_masks,
                                     RecurrentCache<T>& cache, const Indices* ids) {
    const kernel::RecurrentIndices rec = kernel::check_spec("recurrent_forward", cell, spec);
    kernel::check_weights("recurrent_forward", cell, spec, w);
    if (ids) check_recurrent_ids("recurrent_forward", *ids, spec.input_size);
    const std::size_t S = cell.states();
    if (initial_states.size() > S) {
        throw std::invalid_argument(fmt::format("recurrent_forward: {} initial states for the {} cell, which has {}",
                                                initial_states.size(), cell.name(), S));
    }
    const Shape input_shape = ids ? Shape{ids->shape(0), ids->shape(1), spec.input_size} : shape_of(input);
    std::vector<Shape> state_shapes;
    std::vector<const Shape*> given;
    for (const Tensor<T>* s : initial_states) state_shapes.push_back(s ? shape_of(*s) : Shape{});
    for (std::size_t i = 0; i < initial_states.size(); ++i) given.push_back(initial_states[i] ? &state_shapes[i] : nullptr);
    check_recurrent_args("recurrent_forward", spec, input_shape, false, given, lengths);
    const std::size_t steps = input_shape[0], batch = input_shape[1], H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, GH = cell.gates() * H;
    if (!dropout_masks.empty() && dropout_masks.size() + 1 != L) {
        throw std::invalid_argument(fmt::format("recurrent_forward: {} dropout masks for {} layers (need num_layers - 1)",
                                                dropout_masks.size(), L));
    }
    for (const Tensor<T>& m : dropout_masks) {
        if (shape_of(m) != Shape{steps, batch, D * H}) {
            throw ShapeError(fmt::format("recurrent_forward: a dropout mask has shape {}, expected {}", shape_str(shape_of(m)),
                                         shape_str({steps, batch, D * H})));
        }
    }
    cache.steps = steps;
    cache.batch = batch;
    cache.lengths = lengths.empty() ? std::vector<std::int64_t>(batch, static_cast<std::int64_t>(steps)) : lengths;
    cache.layer_inputs.resize(L);
    cache.states.resize(L * D * S);
    cache.gates.resize(L * D);
    cache.saved.resize(cell.saved_per_row(H) ? L * D : 0);
    cache.dropout_masks = std::move(dropout_masks);
    cache.one_hot = ids != nullptr;
    if (ids) {
        cache.ids = *ids;
        cache.layer_inputs[0] = Tensor<T>();
    } else {
        cache.layer_inputs[0] = input;
    }

    const ForwardCall<T> call{cell, spec, w, initial_states, rec, steps, batch,
                              batch * GH >= kernel::split_rows_from && cell.concurrent_rows()};
    RecurrentResult<T> result;
    for (std::size_t i = 0; i < S; ++i) result.final_states.push_back(Tensor<T>::from_shape({L * D, batch, H}));
    std::vector<T> recurrent(cell.recurrent_gemm() == RecurrentGemm::separate ? batch * GH : 0);
    std::vector<RowScratch<T>> scratch = kernel::row_scratch<T>(S, H);
    for (std::size_t l = 0; l < L; ++l) {
        Tensor<T> out = Tensor<T>::from_shape({steps, batch, D * H});
        for (std::size_t d = 0; d < D; ++d) forward_direction(call, l, d, cache, out, result.final_states, recurrent, scratch);
        if (l + 1 < L) {
            if (!cache.dropout_masks.empty()) out *= cache.dropout_masks[l];
            cache.layer_inputs[l + 1] = std::move(out);
        } else {
            result.output = std::move(out);
        }
    }
    return result;
}

template RecurrentResult<float> recurrent_forward(const FusedCell<float>&, const RecurrentSpec&, const RecurrentWeights<float>&,
                                                  const Tensor<float>&, const std::vector<const Tensor<float>*>&,
                                                  const std::vector<std::int64_t>&, std::vector<Tensor<float>>,
                                                  RecurrentCache<float>&, const Indices*);
template RecurrentResult<double> recurrent_forward(const FusedCell<double>&, const RecurrentSpec&, const RecurrentWeights<double>&,
                                                   const Tensor<double>&, const std::vector<const Tensor<double>*>&,
                                                   const std::vector<std::int64_t>&, std::vector<Tensor<double>>,
                                                   RecurrentCache<double>&, const Indices*);

}  // namespace xgrad::nn
