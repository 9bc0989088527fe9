#include "sequences.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "../autograd/ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

namespace {
// The longest length, checking that there are sequences and that their trailing shapes agree.
template <class S>
std::size_t longest(const std::vector<S>& sequences, const std::vector<Shape>& shapes) {
    if (sequences.empty()) throw ShapeError("pad_sequences: no sequences");
    std::size_t steps = 0;
    for (std::size_t b = 0; b < shapes.size(); ++b) {
        if (shapes[b].empty()) throw ShapeError(fmt::format("pad_sequences: sequence {} is 0-d (need (length, ...))", b));
        if (!std::equal(shapes[b].begin() + 1, shapes[b].end(), shapes[0].begin() + 1, shapes[0].end())) {
            throw ShapeError(fmt::format("pad_sequences: sequence {} has shape {}, sequence 0 {}: the trailing shapes differ", b,
                                         shape_str(shapes[b]), shape_str(shapes[0])));
        }
        steps = std::max(steps, shapes[b][0]);
    }
    return steps;
}

Mask step_mask(const std::vector<std::int64_t>& lengths, std::size_t steps, bool batch_first) {
    const std::size_t B = lengths.size();
    Mask mask = Mask::from_shape(batch_first ? Shape{B, steps} : Shape{steps, B});
    for (std::size_t t = 0; t < steps; ++t)
        for (std::size_t b = 0; b < B; ++b) mask.data()[batch_first ? b * steps + t : t * B + b] = static_cast<std::int64_t>(t) < lengths[b];
    return mask;
}
}  // namespace

// padded[t, b] = sequences[b][t] for t < L_b, else padding_value;   d sequences[b][t] = d padded[t, b]
template <class T>
PaddedSequences<T> pad_sequences(const std::vector<Var<T>>& sequences, bool batch_first, std::type_identity_t<T> padding_value) {
    std::vector<Shape> shapes;
    for (const Var<T>& s : sequences) shapes.push_back(s.shape());
    const std::size_t steps = longest(sequences, shapes);
    PaddedSequences<T> out;
    std::vector<Var<T>> columns;
    for (std::size_t b = 0; b < sequences.size(); ++b) {
        out.lengths.push_back(static_cast<std::int64_t>(shapes[b][0]));
        if (shapes[b][0] == steps) {
            columns.push_back(sequences[b]);
            continue;
        }
        Shape pad_shape = shapes[b];
        pad_shape[0] = steps - shapes[b][0];
        Tensor<T> pad = Tensor<T>::from_shape(pad_shape);
        pad.fill(padding_value);
        columns.push_back(concat(std::vector<Var<T>>{sequences[b], sequences[b].tape().leaf(std::move(pad), false)}, 0));
    }
    out.padded = stack(columns, batch_first ? 0 : 1);
    out.mask = step_mask(out.lengths, steps, batch_first);
    return out;
}

template <class T>
std::vector<Var<T>> unpad_sequences(const Var<T>& padded, const std::vector<std::int64_t>& lengths, bool batch_first) {
    const Shape shape = padded.shape();
    const std::size_t batch_axis = batch_first ? 0 : 1;
    if (shape.size() < 2 || shape[batch_axis] != lengths.size()) {
        throw ShapeError(fmt::format("unpad_sequences: a padded batch {} ({}) does not hold {} sequences", shape_str(shape),
                                     batch_first ? "(B, T, ...)" : "(T, B, ...)", lengths.size()));
    }
    const std::size_t steps = shape[batch_first ? 1 : 0];
    std::vector<Var<T>> sequences;
    for (std::size_t b = 0; b < lengths.size(); ++b) {
        if (lengths[b] < 0 || static_cast<std::size_t>(lengths[b]) > steps) {
            throw ShapeError(fmt::format("unpad_sequences: length {} of sequence {} is not in [0, {}]", lengths[b], b, steps));
        }
        const Var<T> column = select(padded, static_cast<std::ptrdiff_t>(batch_axis), static_cast<std::ptrdiff_t>(b));
        sequences.push_back(narrow(column, 0, 0, static_cast<std::size_t>(lengths[b])));
    }
    return sequences;
}

PaddedIndices pad_sequences(const std::vector<Indices>& sequences, bool batch_first, std::int64_t padding_value) {
    std::vector<Shape> shapes;
    for (const Indices& s : sequences) shapes.push_back(shape_of(s));
    const std::size_t steps = longest(sequences, shapes), B = sequences.size();
    Shape out_shape = shapes[0];
    out_shape[0] = steps;
    out_shape.insert(out_shape.begin() + (batch_first ? 0 : 1), B);
    const std::size_t per_step = numel(Shape(shapes[0].begin() + 1, shapes[0].end()));
    PaddedIndices out{Indices::from_shape(out_shape), {}, {}};
    out.padded.fill(padding_value);
    for (std::size_t b = 0; b < B; ++b) {
        out.lengths.push_back(static_cast<std::int64_t>(shapes[b][0]));
        for (std::size_t t = 0; t < shapes[b][0]; ++t) {
            const std::size_t at = batch_first ? (b * steps + t) : (t * B + b);
            std::copy_n(sequences[b].data() + t * per_step, per_step, out.padded.data() + at * per_step);
        }
    }
    out.mask = step_mask(out.lengths, steps, batch_first);
    return out;
}

#define SEQUENCES_INSTANCES(T)                                                                                      \
    template PaddedSequences<T> pad_sequences(const std::vector<Var<T>>&, bool, std::type_identity_t<T>);         \
    template std::vector<Var<T>> unpad_sequences(const Var<T>&, const std::vector<std::int64_t>&, bool);
XGRAD_FOR_FLOAT_AND_DOUBLE(SEQUENCES_INSTANCES)

}  // namespace xgrad::nn
