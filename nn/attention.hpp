/// @file
/// Attention over a sequence of encoder outputs, with a padding mask: dot-product (Luong; scaled as
/// in Transformers) and additive (Bahdanau). Built from primitive ops, so their gradients come from
/// the graph. Masked positions get exactly zero weight; the weights are returned for inspection.
///
/// @code
///   auto [context, weights] = xgrad::nn::dot_product_attention(decoder_h, encoder_out, encoder_out, mask);
///   xgrad::nn::AdditiveAttention<float> attend(hidden, hidden, 64);
///   auto [context, weights] = attend.forward(decoder_h, encoder_out, encoder_out, mask);
/// @endcode
#pragma once

#include <cstddef>

#include "../autograd/graph.hpp"
#include "../tensor/random.hpp"
#include "module.hpp"

namespace xgrad::nn {

/// What an attention returns: the weighted sum of the values and the weights themselves.
template <class T>
struct AttentionOutput {
    Var<T> context;  ///< (B, Dv), or (B, Tq, Dv) for a sequence of queries
    Var<T> weights;  ///< (B, Tk), or (B, Tq, Tk): each row sums to 1, zero where the mask is false
};

/// softmax(q kᵀ / √D) v over the keys. query (B, D) or (B, Tq, D), keys (B, Tk, D), values (B, Tk, Dv);
/// mask (B, Tk), true where a key may be attended to (not padding); the default (0-d) attends everywhere.
/// Every sequence needs at least one such key. `scaled` false drops the 1/√D.
/// Shapes that do not fit, and keys of feature size 0, throw ShapeError; a sequence with no key to
/// attend to, std::invalid_argument.
template <class T>
AttentionOutput<T> dot_product_attention(const Var<T>& query, const Var<T>& keys, const Var<T>& values,
                                         const Mask& mask = {}, bool scaled = true);

/// Bahdanau's: score = vᵀ tanh(W_q q + W_k k + b), weights = softmax over the keys. The mask means
/// "may attend" (true), as torch's boolean attn_mask, not "is padding" as key_padding_mask.
template <class T>
class AdditiveAttention : public Module<T> {
  public:
    /// Weights ~ U(-1/√fan_in, 1/√fan_in), as nn::Linear's; every size must be positive (std::invalid_argument).
    AdditiveAttention(std::size_t query_size, std::size_t key_size, std::size_t hidden_size,
                      Generator& gen = default_generator());
    /// query (B, query_size), keys (B, Tk, key_size), values (B, Tk, Dv), mask as above.
    /// One query per sequence: context (B, Dv), weights (B, Tk). Throws as dot_product_attention.
    AttentionOutput<T> forward(const Var<T>& query, const Var<T>& keys, const Var<T>& values,
                               const Mask& mask = {}) const;

    Parameter<T> query_weight;  ///< (hidden, query_size)
    Parameter<T> key_weight;    ///< (hidden, key_size)
    Parameter<T> bias;          ///< (hidden,)
    Parameter<T> score_weight;  ///< (1, hidden): v

  private:
    std::size_t query_size_, key_size_, hidden_size_;
};

extern template class AdditiveAttention<float>;
extern template class AdditiveAttention<double>;

}  // namespace xgrad::nn
