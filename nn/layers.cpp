#include "layers.hpp"

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

template class Linear<float>;
template class Linear<double>;
template class Embedding<float>;
template class Embedding<double>;
template class Dropout<float>;
template class Dropout<double>;

}  // namespace xgrad::nn
