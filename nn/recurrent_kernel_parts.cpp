// What the fused kernel's forward and backward share (recurrent_kernel_parts.hpp): the checks of a
// raw call and the input projection.
#include "recurrent_kernel_parts.hpp"

#include <fmt/format.h>

#include "../tensor/linalg.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

namespace kernel {
namespace {
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

}  // namespace

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

// The raw API takes pointers BLAS reads without bounds: everything that sizes those reads is checked
// first.
template <class T>
RecurrentIndices check_spec(std::string_view who, const FusedCell<T>& cell, const RecurrentSpec& spec) {
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
void check_weights(std::string_view who, const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& w) {
    const std::size_t n = spec.num_layers * spec.directions();
    const auto declared = cell.parameters(spec.hidden_size);
    if (w.size() != n) {
        throw std::invalid_argument(fmt::format("{}: weights for {} (layer, direction) pairs given, expected {} (num_layers * directions)",
                                                who, w.size(), n));
    }
    auto check_present = [&](const T* pointer, bool present, const std::string& name, std::size_t k) {
        if ((pointer != nullptr) != present) {
            throw std::invalid_argument(fmt::format("{}: {}[{}] is {}", who, name, k, present ? "null" : "given, but there are no biases"));
        }
    };
    for (std::size_t k = 0; k < n; ++k) {
        check_present(w[k].weight_ih, true, "weight_ih", k);
        check_present(w[k].bias_ih, spec.bias, "bias_ih", k);
        if (w[k].cell.size() != declared.size()) {
            throw std::invalid_argument(fmt::format("{}: {} pointers given for the {} cell's parameters of layer {}{}, expected {} "
                                                    "(one per declared parameter, null for biases without bias)", who,
                                                    w[k].cell.size(), cell.name(), k / spec.directions(),
                                                    k % spec.directions() ? " (reverse)" : "", declared.size()));
        }
        for (std::size_t j = 0; j < declared.size(); ++j) check_present(w[k].cell[j], spec.bias || !declared[j].is_bias, declared[j].name, k);
    }
}


template <class T>
void InputProjection<T>::forward(const T* x, T* a) const {
    if (!ids) {
        gemm_raw<T>(false, true, rows, gates_h, in, T(1), x, in, weight_ih, in, T(0), a, gates_h);
    } else if (rows < in) {  // fewer rows than characters: read W_ih's columns in place
        for (std::size_t r = 0; r < rows; ++r) {
            const T* column = weight_ih + static_cast<std::size_t>(ids->data()[r]);
            for (std::size_t j = 0; j < gates_h; ++j) a[r * gates_h + j] = column[j * in];
        }
    } else {  // W_ihᵀ once, then whole rows of it
        std::vector<T> transposed(in * gates_h);
        transpose_raw(gates_h, in, weight_ih, transposed.data(), gates_h);
        for (std::size_t r = 0; r < rows; ++r) {
            std::copy_n(transposed.data() + static_cast<std::size_t>(ids->data()[r]) * gates_h, gates_h, a + r * gates_h);
        }
    }
}

template <class T>
void InputProjection<T>::one_hot_weight_gradient(const T* delta, T* g) const {
    if (rows < in) {  // fewer rows than characters: add into the columns in place
        std::fill_n(g, gates_h * in, T(0));
        for (std::size_t r = 0; r < rows; ++r) {
            T* column = g + static_cast<std::size_t>(ids->data()[r]);
            for (std::size_t j = 0; j < gates_h; ++j) column[j * in] += delta[r * gates_h + j];
        }
        return;
    }
    std::vector<T> transposed(in * gates_h, T(0));  // δ's rows added into W_ihᵀ's rows, then transposed once
    for (std::size_t r = 0; r < rows; ++r) {
        T* column = transposed.data() + static_cast<std::size_t>(ids->data()[r]) * gates_h;
        for (std::size_t j = 0; j < gates_h; ++j) column[j] += delta[r * gates_h + j];
    }
    transpose_raw(in, gates_h, transposed.data(), g, in);
}

#define RECURRENT_KERNEL_PARTS_INSTANCES(T)                                                                                           \
    template RecurrentIndices checked_cell(std::string_view, const FusedCell<T>&, std::size_t);                         \
    template RecurrentIndices check_spec(std::string_view, const FusedCell<T>&, const RecurrentSpec&);                   \
    template void check_weights(std::string_view, const FusedCell<T>&, const RecurrentSpec&, const RecurrentWeights<T>&); \
    template struct InputProjection<T>;
XGRAD_FOR_FLOAT_AND_DOUBLE(RECURRENT_KERNEL_PARTS_INSTANCES)

}  // namespace kernel

template <class T>
void check_fused_cell(std::string_view who, const FusedCell<T>& cell, std::size_t hidden) {
    kernel::checked_cell(who, cell, hidden);
}
template void check_fused_cell(std::string_view, const FusedCell<float>&, std::size_t);
template void check_fused_cell(std::string_view, const FusedCell<double>&, std::size_t);

}  // namespace xgrad::nn
