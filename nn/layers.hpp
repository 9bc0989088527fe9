// Linear, Embedding and Dropout, with PyTorch's parameter names, shapes and initializations.
//
//   xgrad::nn::Linear<float> fc(256, 96);        // weight (96, 256), bias (96,)
//   auto logits = fc.forward(h);                  // h (..., 256) -> (..., 96)
//   xgrad::nn::Embedding<float> embed(96, 32);    // weight (96, 32), N(0, 1)
//   auto x = embed.forward(graph, ids);           // ids (T, B) -> (T, B, 32)
#pragma once

#include "../autograd/graph.hpp"
#include "../tensor/random.hpp"
#include "module.hpp"

namespace xgrad::nn {

template <class T>
class Linear : public Module<T> {
  public:
    // weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear.
    Linear(std::size_t in_features, std::size_t out_features, bool bias = true,
           Generator& gen = default_generator());
    Var<T> forward(const Var<T>& input) const;  // input (..., in_features)

    Parameter<T> weight;  // (out_features, in_features)
    Parameter<T> bias;    // (out_features,), undefined without bias
};

template <class T>
class Embedding : public Module<T> {
  public:
    Embedding(std::size_t num_embeddings, std::size_t embedding_dim, Generator& gen = default_generator());
    Var<T> forward(Graph<T>& graph, const Indices& indices) const;  // indices.shape + (embedding_dim,)

    Parameter<T> weight;  // (num_embeddings, embedding_dim)
};

template <class T>
class Dropout : public Module<T> {
  public:
    // Its masks come from its own generator, seeded from `gen` at construction.
    explicit Dropout(double p = 0.5, Generator& gen = default_generator());
    Var<T> forward(const Var<T>& input);  // identity in eval mode
    double p() const { return p_; }

  private:
    double p_;
    Generator generator_;
};

extern template class Linear<float>;
extern template class Linear<double>;
extern template class Embedding<float>;
extern template class Embedding<double>;
extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace xgrad::nn
