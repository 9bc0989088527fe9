// The fused recurrent kernel: GEMMs into preallocated buffers around the cell's elementwise rows.
#include "rnn_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <optional>

#include <fmt/format.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor/linalg.hpp"

namespace xgrad::nn {

void check_rnn_args(std::string_view who, const RNNSpec& spec, const Shape& input, bool batch_first,
                    const std::vector<const Shape*>& states, const std::vector<std::int64_t>& lengths) {
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
    const Shape expected = {spec.num_layers * spec.directions(), batch, spec.hidden_size};
    for (std::size_t i = 0; i < states.size(); ++i) {
        if (states[i] && *states[i] != expected) {
            throw ShapeError(fmt::format("{}: {} must have shape {} (num_layers * directions, batch, hidden_size), got {}",
                                         who, i == 0 ? "h0" : i == 1 ? "c0" : fmt::format("initial state {}", i),
                                         shape_str(expected), shape_str(*states[i])));
        }
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

std::vector<LayerParameter> layer_parameters(const std::vector<CellParameter>& cell_parameters, std::size_t gates,
                                             const RNNSpec& spec, std::size_t layer) {
    const std::size_t GH = checked_mul(gates, spec.hidden_size, "layer_parameters", "gates * hidden_size");
    const std::size_t in = layer == 0 ? spec.input_size : checked_mul(spec.hidden_size, spec.directions(), "layer_parameters", "hidden_size * directions");
    std::vector<LayerParameter> out{{"weight_ih", {GH, in}, LayerParameter::weight_ih}};
    for (bool biases : {false, true}) {
        if (biases && !spec.bias) break;
        if (biases) out.push_back({"bias_ih", {GH}, LayerParameter::bias_ih});
        for (std::size_t j = 0; j < cell_parameters.size(); ++j) {
            const CellParameter& p = cell_parameters[j];
            if (p.is_bias == biases) out.push_back({p.name, p.shape, static_cast<std::ptrdiff_t>(j)});
        }
    }
    return out;
}

void check_rnn_ids(std::string_view who, const Indices& ids, std::size_t input_size) {
    if (ids.dimension() != 2) {
        throw ShapeError(fmt::format("{}: index input must be 2-D (seq_len, batch), got {}", who, shape_str(shape_of(ids))));
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::int64_t id = ids.data()[i];
        if (id < 0 || static_cast<std::size_t>(id) >= input_size) {
            throw std::invalid_argument(fmt::format("{}: index {} at position {} is out of range for input_size {}", who,
                                                    id, i, input_size));
        }
    }
}

namespace {
// Where the kernel's GEMM finds weight_hh and bias_hh among the cell's parameters.
struct RecurrentIndices {
    std::size_t weight = 0, bias = 0;
    bool has_bias = false;
};

RecurrentIndices recurrent_indices(std::string_view who, const std::vector<CellParameter>& params, std::size_t GH,
                                   std::size_t H, std::string_view cell) {
    RecurrentIndices r;
    if (params.empty() || params[0].is_bias || params[0].shape != Shape{GH, H}) {
        throw std::invalid_argument(fmt::format("{}: the {} cell asks for the kernel's recurrent GEMM, so its first parameter "
                                                "must be weight_hh of shape {}", who, cell, shape_str({GH, H})));
    }
    for (std::size_t j = 0; j < params.size(); ++j) {
        if (params[j].is_bias) {
            if (params[j].shape != Shape{GH}) {
                throw std::invalid_argument(fmt::format("{}: the {} cell's first bias {} must be bias_hh of shape {}", who,
                                                        cell, params[j].name, shape_str({GH})));
            }
            r.bias = j;
            r.has_bias = true;
            break;
        }
    }
    return r;
}

// check_fused_cell's checks, returning where the kernel's GEMM finds W_hh and b_hh (when it runs one).
template <class T>
RecurrentIndices checked_cell(std::string_view who, const FusedCell<T>& cell, std::size_t hidden) {
    if (!cell.has_fused()) {
        throw std::invalid_argument(fmt::format("{}: the {} cell has no fused rows (forward_row, backward_row)", who, cell.name()));
    }
    if (cell.gates() == 0 || cell.states() == 0) {
        throw std::invalid_argument(fmt::format("{}: the {} cell has {} gates and {} states; it needs at least one of each", who,
                                                cell.name(), cell.gates(), cell.states()));
    }
    if (cell.recurrent_gemm() == RecurrentGemm::none) return {};
    return recurrent_indices(who, cell.parameters(hidden), checked_mul(cell.gates(), hidden, who, "gates * hidden_size"), hidden,
                             cell.name());
}
}  // namespace

template <class T>
void check_fused_cell(std::string_view who, const FusedCell<T>& cell, std::size_t hidden) {
    checked_cell(who, cell, hidden);
}

namespace {
// The raw API takes pointers BLAS reads without bounds: everything that sizes those reads is checked
// first. Returns where the recurrent GEMM's W_hh and b_hh are among the cell's parameters.
template <class T>
RecurrentIndices check_spec(std::string_view who, const FusedCell<T>& cell, const RNNSpec& spec) {
    if (spec.input_size == 0 || spec.hidden_size == 0 || spec.num_layers == 0) {
        throw std::invalid_argument(fmt::format("{}: input_size {}, hidden_size {} and num_layers {} must all be positive", who,
                                                spec.input_size, spec.hidden_size, spec.num_layers));
    }
    const RecurrentIndices rec = checked_cell(who, cell, spec.hidden_size);
    // The counts and buffer sizes the kernel multiplies, overflow-checked once here so that its own products cannot wrap.
    checked_mul(checked_mul(spec.num_layers, spec.directions(), who, "num_layers * directions"), cell.states(), who,
                "num_layers * directions * states");
    const std::size_t widest = std::max(spec.input_size, checked_mul(spec.hidden_size, spec.directions(), who, "hidden_size * directions"));
    numel({cell.gates() + cell.saved_per_row(spec.hidden_size), spec.hidden_size, widest}, who);
    return rec;
}

template <class T>
void check_weights(std::string_view who, const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& w) {
    const std::size_t n = spec.num_layers * spec.directions(), n_bias = spec.bias ? n : 0;
    const auto declared = cell.parameters(spec.hidden_size);
    auto fail_count = [&](const std::string& name, std::size_t given, std::size_t expected, const char* why) {
        throw std::invalid_argument(fmt::format("{}: {} pointers given for {}, expected {} ({})", who, given, name, expected, why));
    };
    if (w.weight_ih.size() != n) fail_count("weight_ih", w.weight_ih.size(), n, "num_layers * directions");
    if (w.bias_ih.size() != n_bias) {
        fail_count("bias_ih", w.bias_ih.size(), n_bias, spec.bias ? "num_layers * directions" : "num_layers * directions, none without bias");
    }
    if (w.cell.size() != n) {
        throw std::invalid_argument(fmt::format("{}: {} lists of the cell's parameters given, expected {} (num_layers * directions)",
                                                who, w.cell.size(), n));
    }
    for (std::size_t k = 0; k < n; ++k) {
        for (auto [name, pointer] : {std::pair{"weight_ih", w.weight_ih[k]}, std::pair{"bias_ih", spec.bias ? w.bias_ih[k] : w.weight_ih[k]}}) {
            if (!pointer) throw std::invalid_argument(fmt::format("{}: {}[{}] is null", who, name, k));
        }
        if (w.cell[k].size() != declared.size()) {
            fail_count(fmt::format("the {} cell's parameters of layer {}{}", cell.name(), k / spec.directions(),
                                   k % spec.directions() ? " (reverse)" : ""),
                       w.cell[k].size(), declared.size(), "one per declared parameter, null for biases without bias");
        }
        for (std::size_t j = 0; j < declared.size(); ++j) {
            const bool present = spec.bias || !declared[j].is_bias;
            if ((w.cell[k][j] != nullptr) != present) {
                throw std::invalid_argument(fmt::format("{}: {}[{}] is {}", who, declared[j].name, k,
                                                        present ? "null" : "given, but there are no biases"));
            }
        }
    }
}

// A cache must be rnn_forward's output for this cell and spec: its buffers' shapes are what backward indexes by.
template <class T>
void check_cache(const FusedCell<T>& cell, const RNNSpec& spec, const RNNCache<T>& cache) {
    const std::size_t T_ = cache.steps, B = cache.batch, H = spec.hidden_size, K = spec.num_layers * spec.directions();
    const std::size_t L = spec.num_layers, saved = cell.saved_per_row(H);
    auto fail = [](const std::string& what) {
        throw std::invalid_argument(fmt::format("rnn_backward: the cache does not come from rnn_forward with this spec ({})", what));
    };
    auto check_all = [&](const std::vector<Tensor<T>>& list, const char* name, std::size_t count, const Shape& shape) {
        if (list.size() != count) fail(fmt::format("{} {} buffers, expected {}", list.size(), name, count));
        for (const Tensor<T>& t : list) {
            if (shape_of(t) != shape) fail(fmt::format("{} of shape {}, expected {}", name, shape_str(shape_of(t)), shape_str(shape)));
        }
    };
    if (T_ == 0 || B == 0) fail("no steps or no sequences");
    if (cache.lengths.size() != B) fail(fmt::format("{} lengths for a batch of {}", cache.lengths.size(), B));
    for (std::int64_t length : cache.lengths) {
        if (length < 0 || static_cast<std::size_t>(length) > T_) fail(fmt::format("length {} outside [0, {}]", length, T_));
    }
    check_all(cache.states, "states", K * cell.states(), {T_ + 1, B, H});
    if (cell.backward_reads_gates()) {
        check_all(cache.gates, "gates", K, {T_, B, cell.gates() * H});
    } else if (cache.gates.size() != K) {
        fail(fmt::format("{} gates buffers, expected {}", cache.gates.size(), K));
    }
    check_all(cache.saved, "saved", saved ? K : 0, {T_, B, saved});
    if (!cache.dropout_masks.empty()) check_all(cache.dropout_masks, "dropout masks", L - 1, {T_, B, spec.directions() * H});
    if (cache.layer_inputs.size() != L) fail(fmt::format("{} layer inputs for {} layers", cache.layer_inputs.size(), L));
    for (std::size_t l = cache.one_hot ? 1 : 0; l < L; ++l) {
        const Shape expected = {T_, B, spec.layer_input_size(l)};
        if (shape_of(cache.layer_inputs[l]) != expected) {
            fail(fmt::format("layer {} input of shape {}, expected {}", l, shape_str(shape_of(cache.layer_inputs[l])),
                             shape_str(expected)));
        }
    }
    if (cache.one_hot) {
        if (shape_of(cache.ids) != Shape{T_, B}) fail(fmt::format("indices of shape {}", shape_str(shape_of(cache.ids))));
        check_rnn_ids("rnn_backward", cache.ids, spec.input_size);
    }
}

void resize(auto& tensor, const Shape& shape) {
    if (!std::equal(tensor.shape().begin(), tensor.shape().end(), shape.begin(), shape.end())) tensor.resize(shape);
}

// Where (layer, direction) k keeps its state before and after step t in a (T + 1)-slot buffer.
struct Slots {
    std::size_t steps, row;
    bool forward;
    std::size_t before(std::size_t t) const { return (forward ? t : t + 1) * row; }
    std::size_t after(std::size_t t) const { return (forward ? t + 1 : t) * row; }
    std::size_t initial() const { return (forward ? 0 : steps) * row; }
    std::size_t final() const { return (forward ? steps : 0) * row; }
};

// What one thread's rows work with: the state pointers a row is handed, the δh it builds and the
// thread's share of a step's sum, allocated once per kernel call (one per thread), not per step.
template <class T>
struct RowScratch {
    RowScratch(std::size_t states, std::size_t hidden)
        : previous(states), next(states), next_read(states), d_next(states), d_previous(states), delta_h(hidden) {}
    std::vector<const T*> previous;
    std::vector<T*> next;             // forward writes the states after the step
    std::vector<const T*> next_read;  // backward reads them
    std::vector<const T*> d_next;
    std::vector<T*> d_previous;
    std::vector<T> delta_h;
    T sum = 0;
};

// One scratch per thread over_rows may use.
template <class T>
std::vector<RowScratch<T>> row_scratch(std::size_t states, std::size_t hidden) {
#ifdef _OPENMP
    const std::size_t threads = static_cast<std::size_t>(std::max(1, omp_get_max_threads()));
#else
    const std::size_t threads = 1;
#endif
    return std::vector<RowScratch<T>>(threads, RowScratch<T>(states, hidden));
}

// Calls rows(first, last, scratch) over the batch rows [0, batch) and returns the sum of what the
// calls return, added in thread order (the same sum on every run): split across the OpenMP threads
// (set_blas_threads) when asked and there are several, else one call. Rows are independent within
// a step, and at 2 threads the activations are otherwise the serial part of a step (BENCHMARKS.md).
// An exception thrown by a row is rethrown here.
template <class T, class Rows>
T over_rows(std::size_t batch, bool split, std::vector<RowScratch<T>>& scratch, Rows&& rows) {
#ifdef _OPENMP
    if (split && scratch.size() > 1) {
        std::size_t used = 1;
        std::exception_ptr failure;
#pragma omp parallel num_threads(static_cast<int>(scratch.size()))
        {
            const auto threads = static_cast<std::size_t>(omp_get_num_threads()), id = static_cast<std::size_t>(omp_get_thread_num());
            if (id == 0) used = threads;
            try {
                scratch[id].sum = rows(batch * id / threads, batch * (id + 1) / threads, scratch[id]);
            } catch (...) {
#pragma omp critical(xgrad_over_rows)
                failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
        T total = 0;
        for (std::size_t id = 0; id < used; ++id) total += scratch[id].sum;
        return total;
    }
#else
    (void)split;
#endif
    return rows(std::size_t{0}, batch, scratch[0]);
}

// Splitting a step's rows pays for the threads' wake-up (a few µs) from about this many values.
constexpr std::size_t split_rows_from = 16384;
}  // namespace

template <class T>
RNNResult<T> rnn_forward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& w, const Tensor<T>& input,
                         const std::vector<const Tensor<T>*>& initial_states, const std::vector<std::int64_t>& lengths,
                         std::vector<Tensor<T>> dropout_masks, RNNCache<T>& cache, const Indices* ids) {
    const RecurrentIndices rec = check_spec("rnn_forward", cell, spec);
    check_weights("rnn_forward", cell, spec, w);
    if (ids) check_rnn_ids("rnn_forward", *ids, spec.input_size);
    const std::size_t S = cell.states();
    if (initial_states.size() > S) {
        throw std::invalid_argument(fmt::format("rnn_forward: {} initial states for the {} cell, which has {}",
                                                initial_states.size(), cell.name(), S));
    }
    const Shape input_shape = ids ? Shape{ids->shape(0), ids->shape(1), spec.input_size} : shape_of(input);
    std::vector<Shape> state_shapes;
    std::vector<const Shape*> given;
    for (const Tensor<T>* s : initial_states) state_shapes.push_back(s ? shape_of(*s) : Shape{});
    for (std::size_t i = 0; i < initial_states.size(); ++i) given.push_back(initial_states[i] ? &state_shapes[i] : nullptr);
    check_rnn_args("rnn_forward", spec, input_shape, false, given, lengths);
    const std::size_t steps = input_shape[0], batch = input_shape[1], H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H, GH = cell.gates() * H;
    const std::size_t saved = cell.saved_per_row(H);
    if (!dropout_masks.empty() && dropout_masks.size() + 1 != L) {
        throw std::invalid_argument(fmt::format("rnn_forward: {} dropout masks for {} layers (need num_layers - 1)",
                                                dropout_masks.size(), L));
    }
    for (const Tensor<T>& m : dropout_masks) {
        if (shape_of(m) != Shape{steps, batch, D * H}) {
            throw ShapeError(fmt::format("rnn_forward: a dropout mask has shape {}, expected {}", shape_str(shape_of(m)),
                                         shape_str({steps, batch, D * H})));
        }
    }
    const RecurrentGemm gemm = cell.recurrent_gemm();
    const bool rec_bias = rec.has_bias && spec.bias;
    cache.steps = steps;
    cache.batch = batch;
    cache.lengths = lengths.empty() ? std::vector<std::int64_t>(batch, static_cast<std::int64_t>(steps)) : lengths;
    cache.layer_inputs.resize(L);
    cache.states.resize(L * D * S);
    cache.gates.resize(L * D);
    cache.saved.resize(saved ? L * D : 0);
    cache.dropout_masks = std::move(dropout_masks);
    cache.one_hot = ids != nullptr;
    if (ids) {
        cache.ids = *ids;
        cache.layer_inputs[0] = Tensor<T>();
    } else {
        cache.layer_inputs[0] = input;
    }
    std::vector<T> transposed;  // W_ihᵀ (input_size, gates * H), for the row gather of one-hot input

    RNNResult<T> result;
    for (std::size_t i = 0; i < S; ++i) result.final_states.push_back(Tensor<T>::from_shape({L * D, batch, H}));
    std::vector<T> recurrent(gemm == RecurrentGemm::separate ? batch * GH : 0);
    const bool split = batch * GH >= split_rows_from && cell.concurrent_rows();
    std::vector<RowScratch<T>> scratch = row_scratch<T>(S, H);
    for (std::size_t l = 0; l < L; ++l) {
        const Tensor<T>& x = cache.layer_inputs[l];
        const std::size_t in = spec.layer_input_size(l);
        Tensor<T> out = Tensor<T>::from_shape({steps, batch, D * H});
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            const Slots slot{steps, row, d == 0};
            const std::vector<const T*>& params = w.cell[k];
            std::vector<T*> state(S);
            for (std::size_t i = 0; i < S; ++i) {
                Tensor<T>& buffer = cache.states[k * S + i];
                resize(buffer, {steps + 1, batch, H});
                state[i] = buffer.data();
                const Tensor<T>* initial = i < initial_states.size() ? initial_states[i] : nullptr;
                if (initial) {
                    std::copy_n(initial->data() + k * row, row, state[i] + slot.initial());
                } else {
                    std::fill_n(state[i] + slot.initial(), row, T(0));
                }
            }
            resize(cache.gates[k], {steps, batch, GH});
            if (saved) resize(cache.saved[k], {steps, batch, saved});
            T* a = cache.gates[k].data();
            // Every step's input projection in one GEMM (a row gather of W_ihᵀ for one-hot input);
            // with into_gates, both biases are folded in here.
            if (l == 0 && ids && steps * batch < in) {  // fewer rows than characters: read W_ih's columns in place
                for (std::size_t r = 0; r < steps * batch; ++r) {
                    const T* column = w.weight_ih[k] + static_cast<std::size_t>(ids->data()[r]);
                    for (std::size_t j = 0; j < GH; ++j) a[r * GH + j] = column[j * in];
                }
            } else if (l == 0 && ids) {
                transposed.resize(in * GH);
                transpose_raw(GH, in, w.weight_ih[k], transposed.data(), GH);
                for (std::size_t r = 0; r < steps * batch; ++r) {
                    std::copy_n(transposed.data() + static_cast<std::size_t>(ids->data()[r]) * GH, GH, a + r * GH);
                }
            } else {
                gemm_raw<T>(false, true, steps * batch, GH, in, T(1), x.data(), in, w.weight_ih[k], in, T(0), a, GH);
            }
            const T* b_hh = rec_bias ? params[rec.bias] : nullptr;
            if (spec.bias) {
                const bool fold = gemm == RecurrentGemm::into_gates && b_hh;
                for (std::size_t r = 0; r < steps * batch; ++r)
                    for (std::size_t j = 0; j < GH; ++j) a[r * GH + j] += w.bias_ih[k][j] + (fold ? b_hh[j] : T(0));
            }
            std::optional<PrepackedGemm<T>> step_product;  // h_{t-1} W_hhᵀ, every step against the same W_hh
            if (gemm != RecurrentGemm::none) step_product.emplace(batch, GH, H, params[rec.weight], true, H, GH);
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = slot.forward ? step : steps - 1 - step;
                const T* h_prev = state[0] + slot.before(t);
                T* a_t = a + t * batch * GH;
                if (gemm == RecurrentGemm::into_gates) {
                    (*step_product)(h_prev, a_t, true);
                } else if (gemm == RecurrentGemm::separate) {
                    (*step_product)(h_prev, recurrent.data(), false);
                    if (b_hh) {
                        for (std::size_t b = 0; b < batch; ++b)
                            for (std::size_t j = 0; j < GH; ++j) recurrent[b * GH + j] += b_hh[j];
                    }
                }
                over_rows(batch, split, scratch, [&](std::size_t first, std::size_t last, RowScratch<T>& own) {
                    std::vector<const T*>& previous = own.previous;
                    std::vector<T*>& next = own.next;
                    for (std::size_t b = first; b < last; ++b) {
                        T* o = out.data() + (t * batch + b) * D * H + d * H;
                        for (std::size_t i = 0; i < S; ++i) {
                            previous[i] = state[i] + slot.before(t) + b * H;
                            next[i] = state[i] + slot.after(t) + b * H;
                        }
                        if (static_cast<std::int64_t>(t) < cache.lengths[b]) {
                            cell.forward_row({H, a_t + b * GH, gemm == RecurrentGemm::separate ? recurrent.data() + b * GH : nullptr,
                                              saved ? cache.saved[k].data() + (t * batch + b) * saved : nullptr, previous, next,
                                              params});
                            std::copy_n(next[0], H, o);
                        } else {  // past this sequence's end: carry the states, output zero
                            for (std::size_t i = 0; i < S; ++i) std::copy_n(previous[i], H, next[i]);
                            std::fill_n(o, H, T(0));
                        }
                    }
                    return T(0);
                });
            }
            for (std::size_t i = 0; i < S; ++i) std::copy_n(state[i] + slot.final(), row, result.final_states[i].data() + k * row);
            if (!cell.backward_reads_gates()) cache.gates[k] = Tensor<T>();
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

namespace {
// One weight's gradient: G (rows, cols) = δᵀ · X, X's rows ld apart.
template <class T>
struct WeightInput {
    const T* x;
    std::size_t ld, cols;
    T* g;
};

// The gradients of weights that see the same δ (`count` rows, ld_delta apart), in one product: δᵀ ·
// [X_1 | X_2 | ...], then split. Computed as ([X_1 | ...]ᵀ · δ)ᵀ, which reads the large δ along its
// rows: as δᵀ · X, oneDNN's sgemm walks δ down its columns and ran a 2048 x 96 gradient over 8192
// rows at 35 GFLOP/s, against 71 this way (OpenBLAS 77 and 82; the transpose included). Joined, the
// narrow input weight (96 columns) rides along with W_hh's 512 instead of running at half rate alone.
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

// rnn_backward's body. gates_out: empty, or per (layer, direction) the cache's gates buffer, which
// then receives the gate gradients in place of a buffer of their own.
template <class T>
RNNGrads<T> backward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& w, const RNNCache<T>& cache,
                     const T* d_output, const std::vector<const T*>& d_final_states, bool need_input_grad,
                     const std::vector<T*>& gates_out) {
    const RecurrentIndices rec = check_spec("rnn_backward", cell, spec);
    check_weights("rnn_backward", cell, spec, w);
    check_cache(cell, spec, cache);
    const std::size_t S = cell.states();
    if (d_final_states.size() > S) {
        throw std::invalid_argument(fmt::format("rnn_backward: {} final-state gradients for the {} cell, which has {} states",
                                                d_final_states.size(), cell.name(), S));
    }
    const std::size_t steps = cache.steps, batch = cache.batch, H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H, GH = cell.gates() * H;
    const std::size_t saved = cell.saved_per_row(H);
    const RecurrentGemm gemm = cell.recurrent_gemm();
    const auto declared = cell.parameters(H);
    const bool rec_bias = rec.has_bias && spec.bias;
    RNNGrads<T> g;
    for (std::size_t i = 0; i < S; ++i) g.initial_states.push_back(Tensor<T>::from_shape({L * D, batch, H}));
    g.hidden_grad_norms = Tensor<T>::from_shape({L * D, steps});
    g.weight_ih.resize(L * D);
    g.bias_ih.resize(spec.bias ? L * D : 0);
    g.cell.resize(L * D);
    // The gradient flowing into the current layer's output: the caller's, read in place, for the top
    // layer; below it, the input gradient of the layer above.
    Tensor<T> d_out;
    if (!d_output) {
        d_out = Tensor<T>::from_shape({steps, batch, D * H});
        d_out.fill(T(0));
        d_output = d_out.data();
    }
    const bool in_place = !gates_out.empty();
    Tensor<T> d_ax = in_place ? Tensor<T>() : Tensor<T>::from_shape({steps, batch, GH});
    Tensor<T> d_ah = gemm == RecurrentGemm::separate ? Tensor<T>::from_shape({steps, batch, GH}) : Tensor<T>();
    // Per state: the gradient carried into the current step (ds) and the one it hands back (ds_prev).
    std::vector<std::vector<T>> ds(S, std::vector<T>(row)), ds_prev(S, std::vector<T>(row));
    std::vector<T*> d_params(declared.size());
    const bool split = batch * GH >= split_rows_from && cell.concurrent_rows();
    std::vector<RowScratch<T>> scratch = row_scratch<T>(S, H);

    const bool one_hot = cache.one_hot;
    for (std::size_t l = L; l-- > 0;) {
        const std::size_t in = spec.layer_input_size(l);
        const Tensor<T>& x = cache.layer_inputs[l];
        // The lowest layer's input gradient only when asked for (and never for indices).
        const bool want_dx = l > 0 || (need_input_grad && !one_hot);
        Tensor<T> d_x = want_dx ? Tensor<T>::from_shape({steps, batch, in}) : Tensor<T>();
        if (want_dx) d_x.fill(T(0));
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            const Slots slot{steps, row, d == 0};
            const std::vector<const T*>& params = w.cell[k];
            std::vector<const T*> state(S);
            for (std::size_t i = 0; i < S; ++i) state[i] = cache.states[k * S + i].data();
            const T* act = cell.backward_reads_gates() ? cache.gates[k].data() : nullptr;
            T* const dax = in_place ? gates_out[k] : d_ax.data();                 // δ of the gates
            T* const dah = gemm == RecurrentGemm::separate ? d_ah.data() : dax;  // into_gates: one δ for both parts
            // The rows accumulate into the parameters the kernel's GEMM does not own.
            g.cell[k].assign(declared.size(), Tensor<T>());
            for (std::size_t j = 0; j < declared.size(); ++j) {
                const bool owned = gemm != RecurrentGemm::none && (j == rec.weight || (rec_bias && j == rec.bias));
                d_params[j] = nullptr;
                if (!params[j] || owned) continue;
                g.cell[k][j] = Tensor<T>::from_shape(declared[j].shape);
                g.cell[k][j].fill(T(0));
                d_params[j] = g.cell[k][j].data();
            }
            for (std::size_t i = 0; i < S; ++i) {
                const T* given = i < d_final_states.size() ? d_final_states[i] : nullptr;
                if (given) {
                    std::copy_n(given + k * row, row, ds[i].begin());
                } else {
                    std::fill(ds[i].begin(), ds[i].end(), T(0));
                }
            }
            // Rows that accumulate into parameters of their own (a user cell's) would race when split.
            const bool rows_own_nothing = std::all_of(d_params.begin(), d_params.end(), [](const T* p) { return p == nullptr; });
            std::optional<PrepackedGemm<T>> step_product;  // δ_recurrent W_hh, every step against the same W_hh
            if (gemm != RecurrentGemm::none) step_product.emplace(batch, H, GH, params[rec.weight], false, GH, H);
            // Walk the steps in the reverse of the order forward took them.
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = slot.forward ? steps - 1 - step : step;
                const T norm2 = over_rows(batch, split && rows_own_nothing, scratch, [&](std::size_t first, std::size_t last, RowScratch<T>& own) {
                    std::vector<const T*>& previous = own.previous;
                    std::vector<const T*>& next = own.next_read;
                    std::vector<const T*>& d_next = own.d_next;
                    std::vector<T*>& d_previous = own.d_previous;
                    std::vector<T>& delta_h = own.delta_h;
                    T sum = 0;
                    for (std::size_t b = first; b < last; ++b) {
                        T* dx_row = dax + (t * batch + b) * GH;
                        T* dh_row = dah + (t * batch + b) * GH;
                        for (std::size_t i = 0; i < S; ++i) d_previous[i] = ds_prev[i].data() + b * H;
                        if (static_cast<std::int64_t>(t) >= cache.lengths[b]) {  // a carried state passes its gradient straight back
                            std::fill_n(dx_row, GH, T(0));
                            if (gemm == RecurrentGemm::separate) std::fill_n(dh_row, GH, T(0));
                            for (std::size_t i = 0; i < S; ++i) std::copy_n(ds[i].data() + b * H, H, d_previous[i]);
                            continue;
                        }
                        const T* dout = d_output + (t * batch + b) * D * H + d * H;
                        for (std::size_t j = 0; j < H; ++j) {
                            delta_h[j] = ds[0][b * H + j] + dout[j];
                            sum += delta_h[j] * delta_h[j];
                        }
                        for (std::size_t i = 0; i < S; ++i) {
                            previous[i] = state[i] + slot.before(t) + b * H;
                            next[i] = state[i] + slot.after(t) + b * H;
                            d_next[i] = i == 0 ? delta_h.data() : ds[i].data() + b * H;
                        }
                        cell.backward_row({H, act ? act + (t * batch + b) * GH : nullptr,
                                           saved ? cache.saved[k].data() + (t * batch + b) * saved : nullptr, previous, next,
                                           params, d_next, dx_row, gemm == RecurrentGemm::separate ? dh_row : nullptr,
                                           d_previous, d_params});
                    }
                    return sum;
                });
                g.hidden_grad_norms(k, t) = std::sqrt(norm2);
                if (gemm != RecurrentGemm::none) {  // δh_{t-1} += δ_recurrent W_hh (zero rows for finished sequences)
                    (*step_product)(dah + t * batch * GH, ds_prev[0].data(), true);
                }
                std::swap(ds, ds_prev);
            }
            for (std::size_t i = 0; i < S; ++i) std::copy(ds[i].begin(), ds[i].end(), g.initial_states[i].data() + k * row);
            // Weight gradients over all steps at once: δ (T*B, gates*H) against the inputs and previous
            // states; one product for both where one δ serves both (into_gates).
            std::vector<WeightInput<T>> against_dah, against_dax;
            if (gemm != RecurrentGemm::none) {
                const T* h_before = state[0] + slot.before(0);  // rows t = 0..T-1 of the states before each step
                g.cell[k][rec.weight] = Tensor<T>::from_shape({GH, H});
                against_dah.push_back({h_before, H, H, g.cell[k][rec.weight].data()});
            }
            g.weight_ih[k] = Tensor<T>::from_shape({GH, in});
            if (l == 0 && one_hot && steps * batch < in) {  // fewer rows than characters: add into the columns in place
                std::fill_n(g.weight_ih[k].data(), GH * in, T(0));
                for (std::size_t r = 0; r < steps * batch; ++r) {
                    T* column = g.weight_ih[k].data() + static_cast<std::size_t>(cache.ids.data()[r]);
                    const T* delta = dax + r * GH;
                    for (std::size_t j = 0; j < GH; ++j) column[j * in] += delta[j];
                }
            } else if (l == 0 && one_hot) {  // scatter-add δ rows into the columns their characters select
                std::vector<T> transposed(in * GH, T(0));
                for (std::size_t r = 0; r < steps * batch; ++r) {
                    T* column = transposed.data() + static_cast<std::size_t>(cache.ids.data()[r]) * GH;
                    const T* delta = dax + r * GH;
                    for (std::size_t j = 0; j < GH; ++j) column[j] += delta[j];
                }
                transpose_raw(in, GH, transposed.data(), g.weight_ih[k].data(), in);
            } else {
                (dah == dax ? against_dah : against_dax).push_back({x.data(), in, in, g.weight_ih[k].data()});
            }
            weight_gradients(GH, steps * batch, dah, GH, against_dah);
            weight_gradients(GH, steps * batch, dax, GH, against_dax);
            auto column_sums = [&](const T* delta) {
                Tensor<T> sums = Tensor<T>::from_shape({GH});
                T* out = sums.data();
                std::fill_n(out, GH, T(0));
                for (std::size_t r = 0; r < steps * batch; ++r)
                    for (std::size_t j = 0; j < GH; ++j) out[j] += delta[r * GH + j];
                return sums;
            };
            if (spec.bias) g.bias_ih[k] = column_sums(dax);
            if (rec_bias) g.cell[k][rec.bias] = dah == dax && spec.bias ? g.bias_ih[k] : column_sums(dah);  // into_gates: one δ
            if (want_dx) {
                gemm_raw<T>(false, false, steps * batch, in, GH, T(1), dax, GH, w.weight_ih[k], in, T(1),
                            d_x.data(), in);
            }
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
RNNGrads<T> rnn_backward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& w, const RNNCache<T>& cache,
                         const T* d_output, const std::vector<const T*>& d_final_states, bool need_input_grad) {
    return backward(cell, spec, w, cache, d_output, d_final_states, need_input_grad, {});
}

template <class T>
RNNGrads<T> rnn_backward(const FusedCell<T>& cell, const RNNSpec& spec, const RNNWeights<T>& w, RNNCache<T>&& cache,
                         const T* d_output, const std::vector<const T*>& d_final_states, bool need_input_grad) {
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

#define XGRAD_INSTANTIATE(T)                                                                                           \
    template void check_fused_cell(std::string_view, const FusedCell<T>&, std::size_t);                                \
    template RNNResult<T> rnn_forward(const FusedCell<T>&, const RNNSpec&, const RNNWeights<T>&, const Tensor<T>&,     \
                                      const std::vector<const Tensor<T>*>&, const std::vector<std::int64_t>&,          \
                                      std::vector<Tensor<T>>, RNNCache<T>&, const Indices*);                           \
    template RNNGrads<T> rnn_backward(const FusedCell<T>&, const RNNSpec&, const RNNWeights<T>&, const RNNCache<T>&,   \
                                      const T*, const std::vector<const T*>&, bool);                                   \
    template RNNGrads<T> rnn_backward(const FusedCell<T>&, const RNNSpec&, const RNNWeights<T>&, RNNCache<T>&&,        \
                                      const T*, const std::vector<const T*>&, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
