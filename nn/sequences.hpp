/// @file
/// Batches of variable-length sequences, as torch.nn.utils.rnn's pad_sequence: padding into one
/// tensor with each sequence's length and a mask of its real steps, and back.
///
/// @code
///   auto batch = xgrad::nn::pad_sequences(std::vector{a, b, c});   // each (L_i, features)
///   auto [output, h_n, states] = lstm.forward_states(batch.padded, {}, batch.lengths);
///   auto per_sequence = xgrad::nn::unpad_sequences(output, batch.lengths);
/// @endcode
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../autograd/graph.hpp"
#include "../tensor/tensor.hpp"

namespace xgrad::nn {

/// A padded batch of sequences, as pad_sequences() returns it.
template <class T>
struct PaddedSequences {
    Var<T> padded;                      ///< (T, B, *), or (B, T, *) batch_first; T the longest length
    std::vector<std::int64_t> lengths;  ///< each sequence's, in the order given (what the recurrent layers take)
    Mask mask;              ///< (T, B) or (B, T): true at a sequence's real steps
};

/// Sequences (L_i, *) of one trailing shape, on one graph, padded with `padding_value` past their
/// ends. Differentiable: each sequence gets the gradient of its own steps. A sequence of length 0
/// is allowed (all padding); an empty list or mismatched trailing shapes throw ShapeError.
template <class T>
PaddedSequences<T> pad_sequences(const std::vector<Var<T>>& sequences, bool batch_first = false,
                                 std::type_identity_t<T> padding_value = T(0));

/// The inverse: sequence b is the first lengths[b] steps of column b, (lengths[b], *).
/// Differentiable. Throws ShapeError when `padded` does not hold lengths.size() sequences or a
/// length is outside [0, T].
template <class T>
std::vector<Var<T>> unpad_sequences(const Var<T>& padded, const std::vector<std::int64_t>& lengths, bool batch_first = false);

/// Index sequences (token ids, class labels), padded the same way: (T, B) or (B, T).
struct PaddedIndices {
    /// (T, B, *) or (B, T, *), `padding_value` past each sequence's end (an ignore_index for targets).
    Indices padded;
    /// Each sequence's length, in the order given.
    std::vector<std::int64_t> lengths;
    /// (T, B) or (B, T): true at a sequence's real steps (a cross_entropy mask).
    Mask mask;
};
/// Index sequences (L_i, *) padded into one tensor, as the overload for variables does; throws ShapeError alike.
PaddedIndices pad_sequences(const std::vector<Indices>& sequences, bool batch_first = false, std::int64_t padding_value = 0);

}  // namespace xgrad::nn
