// The fused kernel backward, the handwritten BPTT: through the stack of layers from the top, each
// direction back over time, then its weight gradients over all steps at once.
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "../tensor/linalg.hpp"
#include "recurrent_kernel_parts.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

namespace {
using kernel::RowScratch;

// A cache must be recurrent_forward's output for this cell and spec: its buffers' shapes are what backward indexes by.
template <class T>
void check_cache(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentCache<T>& cache) {
    const std::size_t steps = cache.steps, B = cache.batch, H = spec.hidden_size, K = spec.num_layers * spec.directions();
    const std::size_t L = spec.num_layers, saved = cell.saved_per_row(H);
    auto fail = [](const std::string& what) {
        throw std::invalid_argument(fmt::format("recurrent_backward: the cache does not come from recurrent_forward with this spec ({})", what));
    };
    auto check_all = [&](const std::vector<Tensor<T>>& list, const char* name, std::size_t count, const Shape& shape) {
        if (list.size() != count) fail(fmt::format("{} {} buffers, expected {}", list.size(), name, count));
        for (const Tensor<T>& t : list) {
            if (shape_of(t) != shape) fail(fmt::format("{} of shape {}, expected {}", name, shape_str(shape_of(t)), shape_str(shape)));
        }
    };
    if (steps == 0 || B == 0) fail("no steps or no sequences");
    if (cache.lengths.size() != B) fail(fmt::format("{} lengths for a batch of {}", cache.lengths.size(), B));
    for (std::int64_t length : cache.lengths) {
        if (length < 0 || static_cast<std::size_t>(length) > steps) fail(fmt::format("length {} outside [0, {}]", length, steps));
    }
    check_all(cache.states, "states", K * cell.states(), {steps + 1, B, H});
    if (cell.backward_reads_gates()) {
        check_all(cache.gates, "gates", K, {steps, B, cell.gates() * H});
    } else if (cache.gates.size() != K) {
        fail(fmt::format("{} gates buffers, expected {}", cache.gates.size(), K));
    }
    check_all(cache.saved, "saved", saved ? K : 0, {steps, B, saved});
    if (!cache.dropout_masks.empty()) check_all(cache.dropout_masks, "dropout masks", L - 1, {steps, B, spec.directions() * H});
    if (cache.layer_inputs.size() != L) fail(fmt::format("{} layer inputs for {} layers", cache.layer_inputs.size(), L));
    for (std::size_t l = cache.one_hot ? 1 : 0; l < L; ++l) {
        const Shape expected = {steps, B, spec.layer_input_size(l)};
        if (shape_of(cache.layer_inputs[l]) != expected) {
            fail(fmt::format("layer {} input of shape {}, expected {}", l, shape_str(shape_of(cache.layer_inputs[l])),
                             shape_str(expected)));
        }
    }
    if (cache.one_hot) {
        if (shape_of(cache.ids) != Shape{steps, B}) fail(fmt::format("indices of shape {}", shape_str(shape_of(cache.ids))));
        check_recurrent_ids("recurrent_backward", cache.ids, spec.input_size);
    }
}

// One weight's gradient: G (rows, cols) = δᵀ · X, X's rows ld apart.
template <class T>
struct WeightInput {
    const T* x;
    std::size_t ld, cols;
    T* g;
};

// The gradients of weights that see the same δ (`count` rows, ld_delta apart), in one product: δᵀ ·
// [X_1 | X_2 | ...], then split. Computed as ([X_1 | ...]ᵀ · δ)ᵀ, which reads the large δ along its
// rows, where δᵀ · X walks it down its columns, which oneDNN's sgemm runs at half the rate
// (measured in commit b69d95e). Joined, the narrow input weight rides along with W_hh's product
// instead of running at a lower rate alone.
template <class T>
void weight_gradients(std::size_t rows, std::size_t count, const T* delta, std::size_t ld_delta, const std::vector<WeightInput<T>>& inputs) {
    if (inputs.empty()) return;
    std::size_t cols = 0;
    for (const WeightInput<T>& input : inputs) cols += input.cols;
    std::unique_ptr<T[]> joined;  // [X_1 | X_2 | ...], every value written
    const T* x = inputs[0].x;
    std::size_t ld_x = inputs[0].ld;
    if (inputs.size() > 1) {
        joined = std::make_unique_for_overwrite<T[]>(count * cols);
        for (std::size_t r = 0; r < count; ++r) {
            T* to = joined.get() + r * cols;
            for (const WeightInput<T>& input : inputs) to = std::copy_n(input.x + r * input.ld, input.cols, to);
        }
        x = joined.get();
        ld_x = cols;
    }
    const auto transposed = std::make_unique_for_overwrite<T[]>(cols * rows);
    gemm_raw<T>(true, false, cols, rows, count, T(1), x, ld_x, delta, ld_delta, T(0), transposed.get(), rows);
    const T* part = transposed.get();
    for (const WeightInput<T>& input : inputs) {
        transpose_raw(input.cols, rows, part, input.g, input.cols);
        part += input.cols * rows;
    }
}

template <class T>
Tensor<T> column_sums(const T* delta, std::size_t rows, std::size_t cols) {
    Tensor<T> sums = Tensor<T>::from_shape({cols});
    T* out = sums.data();
    std::fill_n(out, cols, T(0));
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < cols; ++j) out[j] += delta[r * cols + j];
    return sums;
}

// What every (layer, direction) of one backward call reads, and the buffers it reuses.
template <class T>
struct BackwardCall {
    const FusedCell<T>& cell;
    const RecurrentSpec& spec;
    const RecurrentWeights<T>& weights;
    const RecurrentCache<T>& cache;
    const std::vector<const T*>& d_final_states;
    kernel::RecurrentIndices rec;
    bool split;  // a step's rows across threads
    // Per state: the gradient carried into the current step (ds) and the one it hands back (ds_prev).
    std::vector<std::vector<T>> ds, ds_prev;
    std::vector<RowScratch<T>> scratch;
};

// One direction of one layer back over time, from d_output (T, B, directions * H; this direction's
// half) into its parameters' gradients, its initial states' gradients and the norms of ∂l/∂h_t;
// and, when d_x is given, += its share of the layer input's gradient. d_gates is the δ of its
// gates (T, B, gates * H); d_recurrent, with RecurrentGemm::separate, the δ of the recurrent part.
template <class T>
void backward_direction(BackwardCall<T>& call, std::size_t layer, std::size_t direction, const T* d_output, T* d_gates,
                        T* d_recurrent, Tensor<T>* d_x, RecurrentGrads<T>& g) {
    const FusedCell<T>& cell = call.cell;
    const RecurrentCache<T>& cache = call.cache;
    const std::size_t steps = cache.steps, batch = cache.batch, H = call.spec.hidden_size, D = call.spec.directions();
    const std::size_t S = cell.states(), row = batch * H, GH = cell.gates() * H, saved = cell.saved_per_row(H);
    const std::size_t k = layer * D + direction, in = call.spec.layer_input_size(layer);
    const kernel::Slots slot{steps, row, direction == 0};
    const DirectionParameters<const T*>& w = call.weights[k];
    const RecurrentGemm gemm = cell.recurrent_gemm();
    const auto declared = cell.parameters(H);
    const bool rec_bias = call.rec.has_bias && call.spec.bias;
    std::vector<const T*> state(S);
    for (std::size_t i = 0; i < S; ++i) state[i] = cache.states[k * S + i].data();
    const T* gates = cell.backward_reads_gates() ? cache.gates[k].data() : nullptr;
    // With into_gates one δ serves both the input and the recurrent part.
    T* const d_rec = gemm == RecurrentGemm::separate ? d_recurrent : d_gates;
    // The rows accumulate into the parameters the kernel's GEMM does not own.
    DirectionParameters<Tensor<T>>& grads = g.params[k];
    grads.cell.assign(declared.size(), Tensor<T>());
    std::vector<T*> d_params(declared.size(), nullptr);
    for (std::size_t j = 0; j < declared.size(); ++j) {
        const bool owned = gemm != RecurrentGemm::none && (j == call.rec.weight || (rec_bias && j == call.rec.bias));
        if (!w.cell[j] || owned) continue;
        grads.cell[j] = Tensor<T>::from_shape(declared[j].shape);
        grads.cell[j].fill(T(0));
        d_params[j] = grads.cell[j].data();
    }
    std::vector<std::vector<T>>& ds = call.ds;
    std::vector<std::vector<T>>& ds_prev = call.ds_prev;
    for (std::size_t i = 0; i < S; ++i) {
        const T* given = i < call.d_final_states.size() ? call.d_final_states[i] : nullptr;
        if (given) {
            std::copy_n(given + k * row, row, ds[i].begin());
        } else {
            std::fill(ds[i].begin(), ds[i].end(), T(0));
        }
    }
    // Rows that accumulate into parameters of their own (a user cell's) would race when split.
    const bool rows_own_nothing = std::all_of(d_params.begin(), d_params.end(), [](const T* p) { return p == nullptr; });
    std::optional<PrepackedGemm<T>> step_product;  // δ_recurrent W_hh, every step against the same W_hh
    if (gemm != RecurrentGemm::none) step_product.emplace(batch, H, GH, w.cell[call.rec.weight], false, GH, H);
    // Walk the steps in the reverse of the order forward took them.
    for (std::size_t step = 0; step < steps; ++step) {
        const std::size_t t = slot.forward ? steps - 1 - step : step;
        const T norm2 = kernel::over_rows(batch, call.split && rows_own_nothing, call.scratch,
                                          [&](std::size_t first, std::size_t last, RowScratch<T>& own) {
            std::vector<const T*>& previous = own.previous;
            std::vector<const T*>& next = own.next_read;
            std::vector<const T*>& d_next = own.d_next;
            std::vector<T*>& d_previous = own.d_previous;
            std::vector<T>& delta_h = own.delta_h;
            T sum = 0;
            for (std::size_t b = first; b < last; ++b) {
                T* d_gates_row = d_gates + (t * batch + b) * GH;
                T* d_rec_row = d_rec + (t * batch + b) * GH;
                for (std::size_t i = 0; i < S; ++i) d_previous[i] = ds_prev[i].data() + b * H;
                if (static_cast<std::int64_t>(t) >= cache.lengths[b]) {  // a carried state passes its gradient straight back
                    std::fill_n(d_gates_row, GH, T(0));
                    if (gemm == RecurrentGemm::separate) std::fill_n(d_rec_row, GH, T(0));
                    for (std::size_t i = 0; i < S; ++i) std::copy_n(ds[i].data() + b * H, H, d_previous[i]);
                    continue;
                }
                const T* dout = d_output + (t * batch + b) * D * H + direction * H;
                for (std::size_t j = 0; j < H; ++j) {
                    delta_h[j] = ds[0][b * H + j] + dout[j];
                    sum += delta_h[j] * delta_h[j];
                }
                for (std::size_t i = 0; i < S; ++i) {
                    previous[i] = state[i] + slot.before(t) + b * H;
                    next[i] = state[i] + slot.after(t) + b * H;
                    d_next[i] = i == 0 ? delta_h.data() : ds[i].data() + b * H;
                }
                cell.backward_row({H, gates ? gates + (t * batch + b) * GH : nullptr,
                                   saved ? cache.saved[k].data() + (t * batch + b) * saved : nullptr, previous, next,
                                   w.cell, d_next, d_gates_row, gemm == RecurrentGemm::separate ? d_rec_row : nullptr,
                                   d_previous, d_params});
            }
            return sum;
        });
        g.hidden_grad_norms(k, t) = std::sqrt(norm2);
        if (gemm != RecurrentGemm::none) {  // δh_{t-1} += δ_recurrent W_hh (zero rows for finished sequences)
            (*step_product)(d_rec + t * batch * GH, ds_prev[0].data(), true);
        }
        std::swap(ds, ds_prev);
    }
    for (std::size_t i = 0; i < S; ++i) std::copy(ds[i].begin(), ds[i].end(), g.initial_states[i].data() + k * row);
    // Weight gradients over all steps at once: δ (T*B, gates*H) against the inputs and previous
    // states; one product for both where one δ serves both (into_gates).
    std::vector<WeightInput<T>> against_d_rec, against_d_gates;
    if (gemm != RecurrentGemm::none) {
        const T* h_before = state[0] + slot.before(0);  // rows t = 0..T-1 of the states before each step
        grads.cell[call.rec.weight] = Tensor<T>::from_shape({GH, H});
        against_d_rec.push_back({h_before, H, H, grads.cell[call.rec.weight].data()});
    }
    grads.weight_ih = Tensor<T>::from_shape({GH, in});
    const bool one_hot = layer == 0 && cache.one_hot;
    if (one_hot) {
        const kernel::InputProjection<T> projection{w.weight_ih, GH, in, steps * batch, &cache.ids};
        projection.one_hot_weight_gradient(d_gates, grads.weight_ih.data());
    } else {
        (d_rec == d_gates ? against_d_rec : against_d_gates).push_back({cache.layer_inputs[layer].data(), in, in, grads.weight_ih.data()});
    }
    weight_gradients(GH, steps * batch, d_rec, GH, against_d_rec);
    weight_gradients(GH, steps * batch, d_gates, GH, against_d_gates);
    if (call.spec.bias) grads.bias_ih = column_sums(d_gates, steps * batch, GH);
    if (rec_bias) {  // into_gates: the same δ, so the same sums as bias_ih's
        grads.cell[call.rec.bias] = d_rec == d_gates ? grads.bias_ih : column_sums(d_rec, steps * batch, GH);
    }
    if (d_x) gemm_raw<T>(false, false, steps * batch, in, GH, T(1), d_gates, GH, w.weight_ih, in, T(1), d_x->data(), in);
}

// recurrent_backward's body. gates_out: empty, or per (layer, direction) the cache's gates buffer,
// which then receives the gate gradients in place of a buffer of their own.
template <class T>
RecurrentGrads<T> backward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& w,
                           const RecurrentCache<T>& cache, const T* d_output, const std::vector<const T*>& d_final_states,
                           bool need_input_grad, const std::vector<T*>& gates_out) {
    const kernel::RecurrentIndices rec = kernel::check_spec("recurrent_backward", cell, spec);
    kernel::check_weights("recurrent_backward", cell, spec, w);
    check_cache(cell, spec, cache);
    const std::size_t S = cell.states();
    if (d_final_states.size() > S) {
        throw std::invalid_argument(fmt::format("recurrent_backward: {} final-state gradients for the {} cell, which has {} states",
                                                d_final_states.size(), cell.name(), S));
    }
    const std::size_t steps = cache.steps, batch = cache.batch, H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H, GH = cell.gates() * H;
    const RecurrentGemm gemm = cell.recurrent_gemm();
    RecurrentGrads<T> g;
    for (std::size_t i = 0; i < S; ++i) g.initial_states.push_back(Tensor<T>::from_shape({L * D, batch, H}));
    g.hidden_grad_norms = Tensor<T>::from_shape({L * D, steps});
    g.params.resize(L * D);
    // The gradient flowing into the current layer's output: the caller's, read in place, for the top
    // layer; below it, the input gradient of the layer above.
    Tensor<T> d_out;
    if (!d_output) {
        d_out = Tensor<T>::from_shape({steps, batch, D * H});
        d_out.fill(T(0));
        d_output = d_out.data();
    }
    const bool in_place = !gates_out.empty();
    Tensor<T> d_gates = in_place ? Tensor<T>() : Tensor<T>::from_shape({steps, batch, GH});
    Tensor<T> d_recurrent = gemm == RecurrentGemm::separate ? Tensor<T>::from_shape({steps, batch, GH}) : Tensor<T>();
    BackwardCall<T> call{cell, spec, w, cache, d_final_states, rec, batch * GH >= kernel::split_rows_from && cell.concurrent_rows(),
                         std::vector<std::vector<T>>(S, std::vector<T>(row)), std::vector<std::vector<T>>(S, std::vector<T>(row)),
                         kernel::row_scratch<T>(S, H)};
    for (std::size_t l = L; l-- > 0;) {
        // The lowest layer's input gradient only when asked for (and never for indices).
        const bool want_dx = l > 0 || (need_input_grad && !cache.one_hot);
        Tensor<T> d_x = want_dx ? Tensor<T>::from_shape({steps, batch, spec.layer_input_size(l)}) : Tensor<T>();
        if (want_dx) d_x.fill(T(0));
        for (std::size_t d = 0; d < D; ++d) {
            backward_direction(call, l, d, d_output, in_place ? gates_out[l * D + d] : d_gates.data(), d_recurrent.data(),
                               want_dx ? &d_x : nullptr, g);
        }
        if (l > 0) {
            if (!cache.dropout_masks.empty()) d_x *= cache.dropout_masks[l - 1];
            d_out = std::move(d_x);
            d_output = d_out.data();
        } else {
            g.input = std::move(d_x);
        }
    }
    return g;
}

}  // namespace

template <class T>
RecurrentGrads<T> recurrent_backward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& w,
                                     const RecurrentCache<T>& cache, const T* d_output,
                                     const std::vector<const T*>& d_final_states, bool need_input_grad) {
    return backward(cell, spec, w, cache, d_output, d_final_states, need_input_grad, {});
}

template <class T>
RecurrentGrads<T> recurrent_backward(const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& w,
                                     RecurrentCache<T>&& cache, const T* d_output,
                                     const std::vector<const T*>& d_final_states, bool need_input_grad) {
    std::vector<T*> gates_out;
    if (cell.backward_in_place()) {
        for (Tensor<T>& gates : cache.gates) {
            // Freed by forward when backward does not read them: the gradients get a buffer of their own.
            if (!cell.backward_reads_gates()) gates = Tensor<T>::from_shape({cache.steps, cache.batch, cell.gates() * spec.hidden_size});
            gates_out.push_back(gates.data());
        }
    }
    return backward(cell, spec, w, cache, d_output, d_final_states, need_input_grad, gates_out);
}

#define RECURRENT_BACKWARD_INSTANCES(T)                                                                                           \
    template RecurrentGrads<T> recurrent_backward(const FusedCell<T>&, const RecurrentSpec&, const RecurrentWeights<T>&, \
                                                  const RecurrentCache<T>&, const T*, const std::vector<const T*>&, bool); \
    template RecurrentGrads<T> recurrent_backward(const FusedCell<T>&, const RecurrentSpec&, const RecurrentWeights<T>&, \
                                                  RecurrentCache<T>&&, const T*, const std::vector<const T*>&, bool);
XGRAD_FOR_FLOAT_AND_DOUBLE(RECURRENT_BACKWARD_INSTANCES)

}  // namespace xgrad::nn
