#include "layers.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "../autograd/ops.hpp"

namespace xgrad::nn {

template <class T>
Linear<T>::Linear(std::size_t in_features, std::size_t out_features, bool with_bias, Generator& gen)
    : Module<T>("Linear") {
    if (in_features == 0 || out_features == 0) {
        throw std::invalid_argument(
            fmt::format("Linear: in_features ({}) and out_features ({}) must be positive", in_features, out_features));
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    weight = this->register_parameter("weight", uniform<T>({out_features, in_features}, -bound, bound, gen));
    if (with_bias) bias = this->register_parameter("bias", uniform<T>({out_features}, -bound, bound, gen));
}

template <class T>
Var<T> Linear<T>::forward(const Var<T>& input) const {
    Tape<T>& tape = input.tape();
    return linear(input, tape.parameter(weight), bias.defined() ? tape.parameter(bias) : Var<T>());
}

template <class T>
Embedding<T>::Embedding(std::size_t num_embeddings, std::size_t embedding_dim, Generator& gen)
    : Module<T>("Embedding") {
    if (num_embeddings == 0 || embedding_dim == 0) {
        throw std::invalid_argument(fmt::format("Embedding: num_embeddings ({}) and embedding_dim ({}) must be positive",
                                                num_embeddings, embedding_dim));
    }
    weight = this->register_parameter("weight", normal<T>({num_embeddings, embedding_dim}, 0.0, 1.0, gen));
}

template <class T>
Var<T> Embedding<T>::forward(Graph<T>& graph, const Indices& indices) const {
    return embedding(graph.parameter(weight), indices);
}

template <class T>
Dropout<T>::Dropout(double p, Generator& gen) : Module<T>("Dropout"), p_(p), generator_(gen.next_u64()) {
    if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument(fmt::format("Dropout: p = {} is not in [0, 1)", p));
}

template <class T>
Var<T> Dropout<T>::forward(const Var<T>& input) {
    return dropout(input, p_, generator_, this->is_training());
}

template <class T>
LayerNorm<T>::LayerNorm(LayerNormOptions options) : Module<T>("LayerNorm"), options_(std::move(options)) {
    const Shape& shape = options_.normalized_shape();
    if (shape.empty() || std::find(shape.begin(), shape.end(), 0) != shape.end()) {
        throw std::invalid_argument(fmt::format("LayerNorm: normalized_shape {} must have at least one axis and none of size 0",
                                                shape_str(shape)));
    }
    if (!(options_.eps() > 0) || !std::isfinite(options_.eps())) {
        throw std::invalid_argument(fmt::format("LayerNorm: eps = {} must be positive and finite", options_.eps()));
    }
    if (options_.elementwise_affine()) {
        Tensor<T> ones = Tensor<T>::from_shape(shape), zeros = Tensor<T>::from_shape(shape);
        ones.fill(T(1));
        zeros.fill(T(0));
        weight = this->register_parameter("weight", std::move(ones));
        bias = this->register_parameter("bias", std::move(zeros));
    }
}

// μ = mean(x), σ² = mean((x - μ)²) over the normalized axes;  y = (x - μ) / sqrt(σ² + ε) · w + b
template <class T>
Var<T> LayerNorm<T>::forward(const Var<T>& input) const {
    const Shape& normalized = options_.normalized_shape();
    const Shape& shape = input.shape();
    if (shape.size() < normalized.size() || !std::equal(normalized.begin(), normalized.end(), shape.end() - static_cast<std::ptrdiff_t>(normalized.size()))) {
        throw ShapeError(fmt::format("LayerNorm: input {} does not end in normalized_shape {}", shape_str(shape), shape_str(normalized)));
    }
    std::vector<std::ptrdiff_t> axes;
    for (std::size_t a = 0; a < normalized.size(); ++a) axes.push_back(-1 - static_cast<std::ptrdiff_t>(a));
    const Var<T> centered = input - mean(input, axes, true);
    const Var<T> variance = mean(centered * centered, axes, true);
    Var<T> y = centered / sqrt(variance + static_cast<T>(options_.eps()));
    if (!weight.defined()) return y;
    Tape<T>& tape = input.tape();
    return y * tape.parameter(weight) + tape.parameter(bias);
}

template class Linear<float>;
template class Linear<double>;
template class Embedding<float>;
template class Embedding<double>;
template class Dropout<float>;
template class Dropout<double>;
template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace xgrad::nn
