// Batches of variable-length sequences, as torch.nn.utils.rnn's pad_sequence: padding into one
// tensor with each sequence's length and a mask of its real steps, and back.
//
//   auto batch = xgrad::nn::pad_sequences(std::vector{a, b, c});   // each (L_i, features)
//   auto [output, states] = lstm.forward_states(batch.padded, {}, batch.lengths);
//   auto per_sequence = xgrad::nn::unpad_sequences(output, batch.lengths);
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../autograd/graph.hpp"
#include "../tensor/tensor.hpp"

namespace xgrad::nn {

template <class T>
struct PaddedSequences {
    Var<T> padded;                      // (T, B, *), or (B, T, *) batch_first; T the longest length
    std::vector<std::int64_t> lengths;  // each sequence's, in the order given (what the recurrent layers take)
    xt::xarray<bool> mask;              // (T, B) or (B, T): true at a sequence's real steps
};

// Sequences (L_i, *) of one trailing shape, on one graph, padded with `padding_value` past their
// ends. Differentiable: each sequence gets the gradient of its own steps. A sequence of length 0
// is allowed (all padding); an empty list or mismatched trailing shapes throw ShapeError.
template <class T>
PaddedSequences<T> pad_sequences(const std::vector<Var<T>>& sequences, bool batch_first = false,
                                 std::type_identity_t<T> padding_value = T(0));

// The inverse: sequence b is the first lengths[b] steps of column b, (lengths[b], *).
template <class T>
std::vector<Var<T>> unpad_sequences(const Var<T>& padded, const std::vector<std::int64_t>& lengths, bool batch_first = false);

// Index sequences (token ids, class labels), padded the same way: (T, B) or (B, T).
struct PaddedIndices {
    Indices padded;
    std::vector<std::int64_t> lengths;
    xt::xarray<bool> mask;
};
PaddedIndices pad_sequences(const std::vector<Indices>& sequences, bool batch_first = false, std::int64_t padding_value = 0);

}  // namespace xgrad::nn
