/// @file
/// The structure of a recurrent layer and where its parameters sit: the spec fixed when the layer
/// is built, each (layer, direction)'s parameters as one value (DirectionParameters), the order a
/// layer registers them in (PyTorch's), and the checks of a call's shapes. The layer
/// (nn/recurrent.hpp), its graph path, the fused op (nn/recurrent_fused.hpp) and the kernel
/// (nn/recurrent_kernel.hpp) all read this one description.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor/tensor.hpp"
#include "fused_cell.hpp"

namespace xgrad::nn {

/// The structure of a recurrent layer, fixed when it is built.
struct RecurrentSpec {
    /// Features of the input, units per direction of each layer, and stacked layers.
    ///@{
    std::size_t input_size = 0, hidden_size = 0, num_layers = 1;
    ///@}
    /// Whether the layers have biases (bias_ih and the cell's), and a reverse direction beside the forward one.
    ///@{
    bool bias = true, bidirectional = false;
    ///@}

    /// 2 when bidirectional, else 1.
    std::size_t directions() const { return bidirectional ? 2 : 1; }
    /// Features entering `layer`: input_size for layer 0, the layer below's output (hidden_size * directions()) above it.
    std::size_t layer_input_size(std::size_t layer) const { return layer == 0 ? input_size : hidden_size * directions(); }
};

/// One (layer, direction)'s parameters, whatever holds them: the layer's Parameter<T>, a graph's
/// Var<T>, the kernel's const T*, or gradients as Tensor<T>. Every cell has weight_ih (gates * H,
/// layer input) and, with bias, bias_ih (gates * H), which the layer applies to all steps at once;
/// then the cell's own parameters in the order it declares them. A slot stays empty (a default P)
/// for a bias without bias.
template <class P>
struct DirectionParameters {
    P weight_ih{};        ///< (gates * H, layer input)
    P bias_ih{};          ///< (gates * H); empty without bias
    std::vector<P> cell;  ///< the cell's parameters in declared order
};

/// Every slot of `p` in one fixed order, weight_ih, bias_ih, then the cell's: how two values of
/// one (layer, direction), such as its parameters and their gradients, are walked side by side.
template <class P>
std::vector<P*> slots(DirectionParameters<P>& p) {
    std::vector<P*> out{&p.weight_ih, &p.bias_ih};
    for (P& c : p.cell) out.push_back(&c);
    return out;
}

/// The same over a const value.
template <class P>
std::vector<const P*> slots(const DirectionParameters<P>& p) {
    std::vector<const P*> out{&p.weight_ih, &p.bias_ih};
    for (const P& c : p.cell) out.push_back(&c);
    return out;
}

/// Calls visit(name, shape, slot) for each parameter of one (layer, direction) in the order a layer
/// registers them, PyTorch's: weight_ih, the cell's weights, then (with bias) bias_ih and the
/// cell's biases. `name` is PyTorch's without the layer suffix ("weight_hh"); `slot` is where the
/// parameter goes in `into`, whose cell list is sized to the declared parameters first. The only
/// place that order is written.
template <class P, class Visit>
void for_each_registered(DirectionParameters<P>& into, const std::vector<CellParameter>& declared, std::size_t gates,
                         const RecurrentSpec& spec, std::size_t layer, Visit&& visit) {
    const std::size_t GH = checked_mul(gates, spec.hidden_size, "recurrent layer", "gates * hidden_size");
    const std::size_t in = layer == 0 ? spec.input_size
                                      : checked_mul(spec.hidden_size, spec.directions(), "recurrent layer", "hidden_size * directions");
    into.cell.resize(declared.size());
    visit(std::string("weight_ih"), Shape{GH, in}, into.weight_ih);
    for (bool biases : {false, true}) {
        if (biases && !spec.bias) break;
        if (biases) visit(std::string("bias_ih"), Shape{GH}, into.bias_ih);
        for (std::size_t j = 0; j < declared.size(); ++j) {
            if (declared[j].is_bias == biases) visit(declared[j].name, declared[j].shape, into.cell[j]);
        }
    }
}

/// Checks a recurrent call and throws ShapeError / std::invalid_argument naming `who`, the
/// argument and the shapes: input (T, B, input_size), or (B, T, input_size) when batch_first; each
/// given state (num_layers * directions, B, H); lengths empty or one per sequence in [0, T].
void check_recurrent_args(std::string_view who, const RecurrentSpec& spec, const Shape& input, bool batch_first,
                          const std::vector<const Shape*>& states, const std::vector<std::int64_t>& lengths);

/// Checks one-hot indices (T, B) against an input size, naming `who`.
/// ShapeError unless 2-D; std::invalid_argument for an index outside [0, input_size).
void check_recurrent_ids(std::string_view who, const Indices& ids, std::size_t input_size);

}  // namespace xgrad::nn
