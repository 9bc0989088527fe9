#include "attention.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "../autograd/ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

namespace {
// Scores (B, Tq, Tk) with masked keys at -inf, so that softmax gives them exactly zero weight.
template <class T>
Var<T> masked_softmax(const char* who, const Var<T>& scores, const Mask& mask) {
    if (mask.dimension() == 0) return softmax(scores, -1);  // no mask given
    const Shape s = scores.shape();
    if (shape_of(mask) != Shape{s[0], s[2]}) {
        throw ShapeError(fmt::format("{}: the mask must be (batch, keys) = {}, got {}", who, shape_str({s[0], s[2]}),
                                     shape_str(shape_of(mask))));
    }
    for (std::size_t b = 0; b < s[0]; ++b) {
        bool any = false;
        for (std::size_t k = 0; k < s[2]; ++k) any = any || mask(b, k);
        if (!any) throw std::invalid_argument(fmt::format("{}: sequence {} has no key to attend to (its mask is all false)", who, b));
    }
    Mask keep = mask;
    keep.reshape({s[0], 1, s[2]});
    Tensor<T> minus_inf = Tensor<T>::from_shape({1});
    minus_inf.fill(-std::numeric_limits<T>::infinity());
    return softmax(xgrad::where(keep, scores, scores.tape().leaf(std::move(minus_inf), false)), -1);
}

void check_keys(const char* who, const Shape& keys, const Shape& values) {
    if (keys.size() != 3 || values.size() != 3 || keys[0] != values[0] || keys[1] != values[1] || keys[1] == 0) {
        throw ShapeError(fmt::format("{}: keys {} and values {} must be (batch, keys, features) with the same batch and keys", who,
                                     shape_str(keys), shape_str(values)));
    }
    // No features: the scores are empty sums and the scale 1/√0 turns them into NaN weights.
    if (keys[2] == 0) {
        throw ShapeError(fmt::format("{}: keys {} have no features: attention needs a feature size of at least 1", who, shape_str(keys)));
    }
}
}  // namespace

// weights = softmax(q kᵀ / √D, masked), context = weights v
template <class T>
AttentionOutput<T> dot_product_attention(const Var<T>& query, const Var<T>& keys, const Var<T>& values,
                                         const Mask& mask, bool scaled) {
    const char* who = "dot_product_attention";
    const Shape q = query.shape(), k = keys.shape();
    check_keys(who, k, values.shape());
    const bool single = q.size() == 2;
    if ((q.size() != 2 && q.size() != 3) || q[0] != k[0] || q.back() != k[2]) {
        throw ShapeError(fmt::format("{}: query {} must be (batch, {}) or (batch, queries, {}) for keys {}", who, shape_str(q),
                                     k[2], k[2], shape_str(k)));
    }
    const auto B = static_cast<std::ptrdiff_t>(q[0]), D = static_cast<std::ptrdiff_t>(q.back());
    const Var<T> queries = single ? reshape(query, {B, 1, D}) : query;
    Var<T> scores = matmul(queries, transpose(keys, 1, 2));  // (B, Tq, Tk)
    if (scaled) scores = scores * static_cast<T>(1.0 / std::sqrt(static_cast<double>(q.back())));
    Var<T> weights = masked_softmax(who, scores, mask);
    Var<T> context = matmul(weights, values);  // (B, Tq, Dv)
    if (single) {
        context = select(context, 1, 0);
        weights = select(weights, 1, 0);
    }
    return {context, weights};
}

template <class T>
AdditiveAttention<T>::AdditiveAttention(std::size_t query_size, std::size_t key_size, std::size_t hidden_size, Generator& gen)
    : Module<T>("AdditiveAttention"), query_size_(query_size), key_size_(key_size), hidden_size_(hidden_size) {
    if (query_size == 0 || key_size == 0 || hidden_size == 0) {
        throw std::invalid_argument(fmt::format("AdditiveAttention: query_size ({}), key_size ({}) and hidden_size ({}) must be positive",
                                                query_size, key_size, hidden_size));
    }
    auto init = [&](std::size_t rows, std::size_t fan_in) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
        return uniform<T>({rows, fan_in}, -bound, bound, gen);
    };
    query_weight = this->register_parameter("query_weight", init(hidden_size, query_size));
    key_weight = this->register_parameter("key_weight", init(hidden_size, key_size));
    const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
    bias = this->register_parameter("bias", uniform<T>({hidden_size}, -bound, bound, gen));
    score_weight = this->register_parameter("score_weight", init(1, hidden_size));
}

// e_bt = vᵀ tanh(W_q q_b + W_k k_bt + b), weights = softmax_t(e, masked), context_b = Σ_t weights_bt v_bt
template <class T>
AttentionOutput<T> AdditiveAttention<T>::forward(const Var<T>& query, const Var<T>& keys, const Var<T>& values,
                                                 const Mask& mask) const {
    const char* who = "AdditiveAttention";
    const Shape q = query.shape(), k = keys.shape();
    check_keys(who, k, values.shape());
    if (q.size() != 2 || q[0] != k[0] || q[1] != query_size_ || k[2] != key_size_) {
        throw ShapeError(fmt::format("{}: query {} and keys {} must be (batch, {}) and (batch, keys, {})", who, shape_str(q),
                                     shape_str(k), query_size_, key_size_));
    }
    Tape<T>& tape = query.tape();
    const auto B = static_cast<std::ptrdiff_t>(q[0]), Tk = static_cast<std::ptrdiff_t>(k[1]);
    const auto H = static_cast<std::ptrdiff_t>(hidden_size_);
    const Var<T> projected_query = reshape(linear(query, tape.parameter(query_weight), tape.parameter(bias)), {B, 1, H});
    const Var<T> energy = tanh(linear(keys, tape.parameter(key_weight)) + projected_query);  // (B, Tk, H)
    const Var<T> scores = reshape(linear(energy, tape.parameter(score_weight)), {B, 1, Tk});
    const Var<T> weights = masked_softmax(who, scores, mask);  // (B, 1, Tk)
    return {select(matmul(weights, values), 1, 0), select(weights, 1, 0)};
}

#define ATTENTION_INSTANCES(T)                                                                                      \
    template AttentionOutput<T> dot_product_attention(const Var<T>&, const Var<T>&, const Var<T>&,                \
                                                      const Mask&, bool);                             \
    template class AdditiveAttention<T>;
XGRAD_FOR_FLOAT_AND_DOUBLE(ATTENTION_INSTANCES)

}  // namespace xgrad::nn
