// The fused recurrent kernels: GEMMs into preallocated buffers, each cell's elementwise forward
// and backward in plain loops, side by side.
#include "rnn_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include <fmt/format.h>
#include <xsimd/xsimd.hpp>

#include "../tensor/linalg.hpp"

namespace xgrad::nn {

void check_rnn_args(std::string_view who, const RNNSpec& spec, const Shape& input, bool batch_first, const Shape* h0,
                    const std::vector<std::int64_t>& lengths, const Shape* c0) {
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
    for (auto [name, shape] : {std::pair{"h0", h0}, std::pair{"c0", c0}}) {
        if (shape && *shape != state) {
            throw ShapeError(fmt::format("{}: {} must have shape {} (num_layers * directions, batch, hidden_size), got {}",
                                         who, name, shape_str(state), shape_str(*shape)));
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

namespace {
// The raw API takes pointers BLAS reads without bounds: everything that sizes those reads is checked first.
void check_spec(std::string_view who, const RNNSpec& spec) {
    if (spec.input_size == 0 || spec.hidden_size == 0 || spec.num_layers == 0) {
        throw std::invalid_argument(fmt::format("{}: input_size {}, hidden_size {} and num_layers {} must all be positive",
                                                who, spec.input_size, spec.hidden_size, spec.num_layers));
    }
    // The counts and buffer sizes the kernel multiplies, overflow-checked once here so that its own products cannot wrap.
    checked_mul(spec.num_layers, spec.directions(), who, "num_layers * directions");
    const std::size_t widest = std::max(spec.input_size, checked_mul(spec.hidden_size, spec.directions(), who, "hidden_size * directions"));
    numel({spec.gates(), spec.hidden_size, widest}, who);
}

template <class T>
void check_weights(std::string_view who, const RNNSpec& spec, const RNNWeights<T>& w) {
    const std::size_t n = spec.num_layers * spec.directions(), n_bias = spec.bias ? n : 0;
    for (auto [name, list, expected] : {std::tuple{"weight_ih", &w.weight_ih, n}, std::tuple{"weight_hh", &w.weight_hh, n},
                                        std::tuple{"bias_ih", &w.bias_ih, n_bias}, std::tuple{"bias_hh", &w.bias_hh, n_bias}}) {
        if (list->size() != expected) {
            throw std::invalid_argument(fmt::format("{}: {} pointers given for {}, expected {} (num_layers * directions{})", who,
                                                    list->size(), name, expected, spec.bias ? "" : ", none without bias"));
        }
        for (std::size_t k = 0; k < list->size(); ++k) {
            if ((*list)[k] == nullptr) throw std::invalid_argument(fmt::format("{}: {}[{}] is null", who, name, k));
        }
    }
}

// A cache must be rnn_forward's output for this spec: its buffers' shapes are what backward indexes by.
template <class T>
void check_cache(const RNNSpec& spec, const RNNCache<T>& cache) {
    const std::size_t T_ = cache.steps, B = cache.batch, H = spec.hidden_size, D = spec.directions(), L = spec.num_layers;
    const bool lstm = spec.has_cell_state(), gru = spec.mode == RecurrentMode::gru;
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
    check_all(cache.states, "states", L * D, {T_ + 1, B, H});
    check_all(cache.cells, "cells", lstm ? L * D : 0, {T_ + 1, B, H});
    check_all(cache.gates, "gates", L * D, {T_, B, spec.gates() * H});
    check_all(cache.hidden_n, "hidden_n", gru ? L * D : 0, {T_, B, H});
    if (!cache.dropout_masks.empty()) check_all(cache.dropout_masks, "dropout masks", L - 1, {T_, B, D * H});
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
}  // namespace

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
template <class T>
T sigmoid(T x) {
    return T(1) / (T(1) + std::exp(-x));
}

// Activations over n contiguous values in place, a SIMD batch at a time: scalar libm calls would
// cost the kernel as much as a GEMM.
template <class T>
void tanh_inplace(T* x, std::size_t n) {
    using batch = xsimd::batch<T>;
    std::size_t i = 0;
    for (; i + batch::size <= n; i += batch::size) xsimd::tanh(batch::load_unaligned(x + i)).store_unaligned(x + i);
    for (; i < n; ++i) x[i] = std::tanh(x[i]);
}

template <class T>
void sigmoid_inplace(T* x, std::size_t n) {
    using batch = xsimd::batch<T>;
    std::size_t i = 0;
    for (; i + batch::size <= n; i += batch::size) {
        (batch(T(1)) / (batch(T(1)) + xsimd::exp(-batch::load_unaligned(x + i)))).store_unaligned(x + i);
    }
    for (; i < n; ++i) x[i] = sigmoid(x[i]);
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

// One valid row of one step, forward. `a` holds the gates' pre-activations (input part plus, for
// RNN and LSTM, the recurrent part; GRU's recurrent part is `hw`) and is overwritten with their
// activations, which backward reads.
template <class T>
void cell_forward(const RNNSpec& s, T* a, const T* hw, T* hn, const T* h_prev, T* h, const T* c_prev, T* c) {
    const std::size_t H = s.hidden_size;
    switch (s.mode) {
    case RecurrentMode::rnn:  // h = φ(a)
        if (s.nonlinearity == Nonlinearity::tanh) {
            tanh_inplace(a, H);
        } else {
            for (std::size_t j = 0; j < H; ++j) a[j] = std::max(a[j], T(0));
        }
        std::copy_n(a, H, h);
        break;
    case RecurrentMode::lstm:  // i, f, o = σ(·), g = tanh(·);  c = f c_prev + i g;  h = o tanh(c)
        sigmoid_inplace(a, 2 * H);
        tanh_inplace(a + 2 * H, H);
        sigmoid_inplace(a + 3 * H, H);
        for (std::size_t j = 0; j < H; ++j) h[j] = c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j];
        tanh_inplace(h, H);
        for (std::size_t j = 0; j < H; ++j) h[j] *= a[3 * H + j];
        break;
    case RecurrentMode::gru:  // r, z = σ(x· + h·);  n = tanh(x_n + r (W_hn h + b_hn));  h = (1 - z) n + z h_prev
        for (std::size_t j = 0; j < 2 * H; ++j) a[j] += hw[j];
        sigmoid_inplace(a, 2 * H);
        std::copy_n(hw + 2 * H, H, hn);
        for (std::size_t j = 0; j < H; ++j) a[2 * H + j] += a[j] * hn[j];
        tanh_inplace(a + 2 * H, H);
        for (std::size_t j = 0; j < H; ++j) h[j] = (1 - a[H + j]) * a[2 * H + j] + a[H + j] * h_prev[j];
        break;
    }
}

// One valid row of one step, backward: from δh (and the carried δc) to the gates' δ for the input
// part (dx) and the recurrent part (dh_part; the same as dx except GRU's n gate), plus what flows
// to h_{t-1} directly (GRU) and to c_{t-1} (LSTM).
template <class T>
void cell_backward(const RNNSpec& s, const T* act, const T* hn, const T* h_prev, const T* h, const T* c_prev,
                   const T* c, const T* delta_h, const T* delta_c, T* dx, T* dh_part, T* direct_h, T* d_c_prev) {
    const std::size_t H = s.hidden_size;
    switch (s.mode) {
    case RecurrentMode::rnn:  // δa = δh φ'(a), with φ' from h: 1 - h² (tanh), [h > 0] (relu)
        if (s.nonlinearity == Nonlinearity::tanh) {
            for (std::size_t j = 0; j < H; ++j) dx[j] = delta_h[j] * (T(1) - h[j] * h[j]);
        } else {
            for (std::size_t j = 0; j < H; ++j) dx[j] = h[j] > 0 ? delta_h[j] : T(0);
        }
        break;
    case RecurrentMode::lstm:  // δc = δc_carried + δh o (1 - tanh²c);  δi = δc g, δf = δc c_prev, δg = δc i, δo = δh tanh c
        std::copy_n(c, H, d_c_prev);  // tanh(c), vectorized, through the output buffer
        tanh_inplace(d_c_prev, H);
        for (std::size_t j = 0; j < H; ++j) {
            const T i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j], tc = d_c_prev[j];
            const T dc = delta_c[j] + delta_h[j] * o * (1 - tc * tc);
            dx[j] = dc * g * i * (1 - i);
            dx[H + j] = dc * c_prev[j] * f * (1 - f);
            dx[2 * H + j] = dc * i * (1 - g * g);
            dx[3 * H + j] = delta_h[j] * tc * o * (1 - o);
            d_c_prev[j] = dc * f;
        }
        break;
    case RecurrentMode::gru:  // δn = δh (1 - z), δz = δh (h_prev - n), δh_prev ∋ δh z;  δr = δa_n (W_hn h + b_hn)
        for (std::size_t j = 0; j < H; ++j) {
            const T r = act[j], z = act[H + j], n = act[2 * H + j];
            const T da_n = delta_h[j] * (1 - z) * (1 - n * n);
            dx[j] = dh_part[j] = da_n * hn[j] * r * (1 - r);
            dx[H + j] = dh_part[H + j] = delta_h[j] * (h_prev[j] - n) * z * (1 - z);
            dx[2 * H + j] = da_n;
            dh_part[2 * H + j] = da_n * r;
            direct_h[j] = delta_h[j] * z;
        }
        break;
    }
}
}  // namespace

template <class T>
RNNResult<T> rnn_forward(const RNNSpec& spec, const RNNWeights<T>& w, const Tensor<T>& input, const Tensor<T>* h0,
                         const Tensor<T>* c0, const std::vector<std::int64_t>& lengths,
                         std::vector<Tensor<T>> dropout_masks, RNNCache<T>& cache, const Indices* ids) {
    check_spec("rnn_forward", spec);
    check_weights("rnn_forward", spec, w);
    if (ids) check_rnn_ids("rnn_forward", *ids, spec.input_size);
    const Shape input_shape = ids ? Shape{ids->shape(0), ids->shape(1), spec.input_size} : shape_of(input);
    const Shape h0_shape = h0 ? shape_of(*h0) : Shape{}, c0_shape = c0 ? shape_of(*c0) : Shape{};
    check_rnn_args("rnn_forward", spec, input_shape, false, h0 ? &h0_shape : nullptr, lengths,
                   c0 ? &c0_shape : nullptr);
    if (c0 && !spec.has_cell_state()) throw std::invalid_argument("rnn_forward: c0 is for LSTM only");
    const std::size_t steps = input_shape[0], batch = input_shape[1], H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H, GH = spec.gates() * H;
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
    const bool lstm = spec.has_cell_state(), gru = spec.mode == RecurrentMode::gru;
    cache.steps = steps;
    cache.batch = batch;
    cache.lengths = lengths.empty() ? std::vector<std::int64_t>(batch, static_cast<std::int64_t>(steps)) : lengths;
    cache.layer_inputs.resize(L);
    cache.states.resize(L * D);
    cache.cells.resize(lstm ? L * D : 0);
    cache.gates.resize(L * D);
    cache.hidden_n.resize(gru ? L * D : 0);
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
    result.h_n = Tensor<T>::from_shape({L * D, batch, H});
    if (lstm) result.c_n = Tensor<T>::from_shape({L * D, batch, H});
    std::vector<T> hw(gru ? batch * GH : 0);
    for (std::size_t l = 0; l < L; ++l) {
        const Tensor<T>& x = cache.layer_inputs[l];
        const std::size_t in = spec.layer_input_size(l);
        Tensor<T> out = Tensor<T>::from_shape({steps, batch, D * H});
        for (std::size_t d = 0; d < D; ++d) {
            const std::size_t k = l * D + d;
            const Slots slot{steps, row, d == 0};
            resize(cache.states[k], {steps + 1, batch, H});
            resize(cache.gates[k], {steps, batch, GH});
            if (lstm) resize(cache.cells[k], {steps + 1, batch, H});
            if (gru) resize(cache.hidden_n[k], {steps, batch, H});
            T* s = cache.states[k].data();
            T* cs = lstm ? cache.cells[k].data() : nullptr;
            T* a = cache.gates[k].data();
            for (auto [buffer, given] : {std::pair{s, h0}, std::pair{cs, c0}}) {
                if (!buffer) continue;
                if (given) {
                    std::copy_n(given->data() + k * row, row, buffer + slot.initial());
                } else {
                    std::fill_n(buffer + slot.initial(), row, T(0));
                }
            }
            // Every step's input projection in one GEMM (a row gather of W_ihᵀ for one-hot input);
            // RNN and LSTM fold both biases in here.
            if (l == 0 && ids) {
                transposed.resize(in * GH);
                for (std::size_t j = 0; j < GH; ++j)
                    for (std::size_t v = 0; v < in; ++v) transposed[v * GH + j] = w.weight_ih[k][j * in + v];
                for (std::size_t r = 0; r < steps * batch; ++r) {
                    std::copy_n(transposed.data() + static_cast<std::size_t>(ids->data()[r]) * GH, GH, a + r * GH);
                }
            } else {
                gemm_raw<T>(false, true, steps * batch, GH, in, T(1), x.data(), in, w.weight_ih[k], in, T(0), a, GH);
            }
            if (spec.bias) {
                for (std::size_t r = 0; r < steps * batch; ++r)
                    for (std::size_t j = 0; j < GH; ++j) a[r * GH + j] += w.bias_ih[k][j] + (gru ? T(0) : w.bias_hh[k][j]);
            }
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = slot.forward ? step : steps - 1 - step;
                const T* prev = s + slot.before(t);
                T* cur = s + slot.after(t);
                T* a_t = a + t * batch * GH;
                if (gru) {
                    gemm_raw<T>(false, true, batch, GH, H, T(1), prev, H, w.weight_hh[k], H, T(0), hw.data(), GH);
                    if (spec.bias) {
                        for (std::size_t b = 0; b < batch; ++b)
                            for (std::size_t j = 0; j < GH; ++j) hw[b * GH + j] += w.bias_hh[k][j];
                    }
                } else {
                    gemm_raw<T>(false, true, batch, GH, H, T(1), prev, H, w.weight_hh[k], H, T(1), a_t, GH);
                }
                for (std::size_t b = 0; b < batch; ++b) {
                    T* o = out.data() + (t * batch + b) * D * H + d * H;
                    if (static_cast<std::int64_t>(t) < cache.lengths[b]) {
                        cell_forward(spec, a_t + b * GH, gru ? hw.data() + b * GH : nullptr,
                                     gru ? cache.hidden_n[k].data() + (t * batch + b) * H : nullptr, prev + b * H,
                                     cur + b * H, lstm ? cs + slot.before(t) + b * H : nullptr,
                                     lstm ? cs + slot.after(t) + b * H : nullptr);
                        std::copy_n(cur + b * H, H, o);
                    } else {  // past this sequence's end: carry the state, output zero
                        std::copy_n(prev + b * H, H, cur + b * H);
                        if (lstm) std::copy_n(cs + slot.before(t) + b * H, H, cs + slot.after(t) + b * H);
                        std::fill_n(o, H, T(0));
                    }
                }
            }
            std::copy_n(s + slot.final(), row, result.h_n.data() + k * row);
            if (lstm) std::copy_n(cs + slot.final(), row, result.c_n.data() + k * row);
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
                         const T* d_h_n, const T* d_c_n, bool need_input_grad) {
    check_spec("rnn_backward", spec);
    check_weights("rnn_backward", spec, w);
    check_cache(spec, cache);
    const std::size_t steps = cache.steps, batch = cache.batch, H = spec.hidden_size;
    const std::size_t D = spec.directions(), L = spec.num_layers, row = batch * H, GH = spec.gates() * H;
    const bool lstm = spec.has_cell_state(), gru = spec.mode == RecurrentMode::gru;
    RNNGrads<T> g;
    g.h0 = Tensor<T>::from_shape({L * D, batch, H});
    if (lstm) g.c0 = Tensor<T>::from_shape({L * D, batch, H});
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
    Tensor<T> d_ax = Tensor<T>::from_shape({steps, batch, GH});
    Tensor<T> d_ah = gru ? Tensor<T>::from_shape({steps, batch, GH}) : Tensor<T>();
    T* const dah = gru ? d_ah.data() : d_ax.data();  // RNN and LSTM: the same δ for both parts
    std::vector<T> dh(row), dh_next(row), dc(lstm ? row : 0), dc_next(lstm ? row : 0), delta_h(H), direct(row);

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
            const T* s = cache.states[k].data();
            const T* cs = lstm ? cache.cells[k].data() : nullptr;
            const T* act = cache.gates[k].data();
            const T* hn = gru ? cache.hidden_n[k].data() : nullptr;
            for (auto [carried, given] : {std::pair{&dh, d_h_n}, std::pair{&dc, d_c_n}}) {
                if (carried->empty()) continue;
                if (given) {
                    std::copy_n(given + k * row, row, carried->begin());
                } else {
                    std::fill(carried->begin(), carried->end(), T(0));
                }
            }
            // Walk the steps in the reverse of the order forward took them.
            for (std::size_t step = 0; step < steps; ++step) {
                const std::size_t t = slot.forward ? steps - 1 - step : step;
                T norm2 = 0;
                for (std::size_t b = 0; b < batch; ++b) {
                    T* dx_row = d_ax.data() + (t * batch + b) * GH;
                    T* dh_row = dah + (t * batch + b) * GH;
                    if (static_cast<std::int64_t>(t) >= cache.lengths[b]) {
                        std::fill_n(dx_row, GH, T(0));
                        if (gru) std::fill_n(dh_row, GH, T(0));
                        continue;
                    }
                    const T* dout = d_out.data() + (t * batch + b) * D * H + d * H;
                    for (std::size_t j = 0; j < H; ++j) {
                        delta_h[j] = dh[b * H + j] + dout[j];
                        norm2 += delta_h[j] * delta_h[j];
                    }
                    cell_backward(spec, act + (t * batch + b) * GH, gru ? hn + (t * batch + b) * H : nullptr,
                                  s + slot.before(t) + b * H, s + slot.after(t) + b * H,
                                  lstm ? cs + slot.before(t) + b * H : nullptr, lstm ? cs + slot.after(t) + b * H : nullptr,
                                  delta_h.data(), lstm ? dc.data() + b * H : nullptr, dx_row, dh_row,
                                  direct.data() + b * H, lstm ? dc_next.data() + b * H : nullptr);
                }
                g.hidden_grad_norms(k, t) = std::sqrt(norm2);
                gemm_raw<T>(false, false, batch, H, GH, T(1), dah + t * batch * GH, GH, w.weight_hh[k], H, T(0),
                            dh_next.data(), H);
                for (std::size_t b = 0; b < batch; ++b) {
                    const auto at = static_cast<std::ptrdiff_t>(b * H);
                    if (static_cast<std::int64_t>(t) >= cache.lengths[b]) {  // a carried state passes its gradient straight back
                        std::copy_n(dh.begin() + at, H, dh_next.begin() + at);
                        if (lstm) std::copy_n(dc.begin() + at, H, dc_next.begin() + at);
                    } else if (gru) {
                        for (std::size_t j = 0; j < H; ++j) dh_next[b * H + j] += direct[b * H + j];
                    }
                }
                std::swap(dh, dh_next);
                if (lstm) std::swap(dc, dc_next);
            }
            std::copy(dh.begin(), dh.end(), g.h0.data() + k * row);
            if (lstm) std::copy(dc.begin(), dc.end(), g.c0.data() + k * row);
            // Weight gradients over all steps at once: δ (T*B, gates*H) against the inputs and previous states.
            const T* previous = s + slot.before(0);  // rows t = 0..T-1 of the states before each step
            g.weight_hh[k] = Tensor<T>::from_shape({GH, H});
            gemm_raw<T>(true, false, GH, H, steps * batch, T(1), dah, GH, previous, H, T(0), g.weight_hh[k].data(), H);
            g.weight_ih[k] = Tensor<T>::from_shape({GH, in});
            if (l == 0 && one_hot) {  // scatter-add δ rows into the columns their characters select
                std::vector<T> transposed(in * GH, T(0));
                for (std::size_t r = 0; r < steps * batch; ++r) {
                    T* column = transposed.data() + static_cast<std::size_t>(cache.ids.data()[r]) * GH;
                    const T* delta = d_ax.data() + r * GH;
                    for (std::size_t j = 0; j < GH; ++j) column[j] += delta[j];
                }
                for (std::size_t j = 0; j < GH; ++j)
                    for (std::size_t v = 0; v < in; ++v) g.weight_ih[k](j, v) = transposed[v * GH + j];
            } else {
                gemm_raw<T>(true, false, GH, in, steps * batch, T(1), d_ax.data(), GH, x.data(), in, T(0),
                            g.weight_ih[k].data(), in);
            }
            if (spec.bias) {
                for (auto [grad, delta] : {std::pair{&g.bias_ih[k], d_ax.data()}, std::pair{&g.bias_hh[k], dah}}) {
                    *grad = Tensor<T>::from_shape({GH});
                    grad->fill(T(0));
                    for (std::size_t r = 0; r < steps * batch; ++r)
                        for (std::size_t j = 0; j < GH; ++j) (*grad)(j) += delta[r * GH + j];
                }
            }
            if (want_dx) {
                gemm_raw<T>(false, false, steps * batch, in, GH, T(1), d_ax.data(), GH, w.weight_ih[k], in, T(1),
                            d_x.data(), in);
            }
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

#define XGRAD_INSTANTIATE(T)                                                                                        \
    template RNNResult<T> rnn_forward(const RNNSpec&, const RNNWeights<T>&, const Tensor<T>&, const Tensor<T>*,     \
                                      const Tensor<T>*, const std::vector<std::int64_t>&, std::vector<Tensor<T>>,   \
                                      RNNCache<T>&, const Indices*);                                                \
    template RNNGrads<T> rnn_backward(const RNNSpec&, const RNNWeights<T>&, const RNNCache<T>&, const T*, const T*, \
                                      const T*, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
