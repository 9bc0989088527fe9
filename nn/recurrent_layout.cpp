// The checks of a recurrent call's shapes, shared by the layer and the raw kernel.
#include "recurrent_layout.hpp"

#include <fmt/format.h>

namespace xgrad::nn {

void check_recurrent_args(std::string_view who, const RecurrentSpec& spec, const Shape& input, bool batch_first,
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

void check_recurrent_ids(std::string_view who, const Indices& ids, std::size_t input_size) {
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

}  // namespace xgrad::nn
