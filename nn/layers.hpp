/// @file
/// Linear, Embedding, Dropout and LayerNorm, with PyTorch's parameter names, shapes and initializations.
///
/// @code
///   xgrad::nn::Linear<float> fc(256, 96);        // weight (96, 256), bias (96,)
///   auto logits = fc.forward(h);                  // h (..., 256) -> (..., 96)
///   xgrad::nn::Embedding<float> embed(96, 32);    // weight (96, 32), N(0, 1)
///   auto x = embed.forward(graph, ids);           // ids (T, B) -> (T, B, 32)
///   xgrad::nn::LayerNorm<float> norm(xgrad::nn::LayerNormOptions({256}));
///   auto y = norm.forward(h);                     // each (256) row of h to mean 0, variance 1, then affine
/// @endcode
#pragma once

#include "../autograd/graph.hpp"
#include "../tensor/options.hpp"
#include "../tensor/random.hpp"
#include "module.hpp"

namespace xgrad::nn {

/// y = x Wᵀ + b over the last axis, as torch.nn.Linear (parameters "weight" and "bias").
template <class T>
class Linear : public Module<T> {
  public:
    /// weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear.
    /// Both sizes must be positive (std::invalid_argument).
    Linear(std::size_t in_features, std::size_t out_features, bool bias = true,
           Generator& gen = default_generator());
    Var<T> forward(const Var<T>& input) const;  ///< input (..., in_features) -> (..., out_features)

    Parameter<T> weight;  ///< (out_features, in_features)
    Parameter<T> bias;    ///< (out_features,), undefined without bias
};

/// A lookup table of vectors, one row per index, as torch.nn.Embedding (parameter "weight").
template <class T>
class Embedding : public Module<T> {
  public:
    /// weight ~ N(0, 1), as torch.nn.Embedding; both sizes must be positive (std::invalid_argument).
    Embedding(std::size_t num_embeddings, std::size_t embedding_dim, Generator& gen = default_generator());
    /// The rows of the given indices: indices.shape + (embedding_dim,). Recorded on `graph`, since
    /// indices are not a graph value; an index outside [0, num_embeddings) throws std::invalid_argument.
    Var<T> forward(Graph<T>& graph, const Indices& indices) const;

    Parameter<T> weight;  ///< (num_embeddings, embedding_dim)
};

/// Inverted dropout as a module, as torch.nn.Dropout: in training, zeros each element with
/// probability p and scales the rest by 1/(1-p); identity in eval mode.
template <class T>
class Dropout : public Module<T> {
  public:
    /// Its masks come from its own generator, seeded from `gen` at construction.
    /// p must be in [0, 1) (std::invalid_argument).
    explicit Dropout(double p = 0.5, Generator& gen = default_generator());
    /// In training, a fresh mask from the module's own generator at every call; identity in eval mode.
    Var<T> forward(const Var<T>& input);
    /// The drop probability given at construction.
    double p() const { return p_; }

  private:
    double p_;
    Generator generator_;
};

/// LayerNorm's options, torch.nn.LayerNorm's: `LayerNormOptions({H}).eps(1e-6).elementwise_affine(false)`.
/// Each option is a setter and a getter (XGRAD_OPTION).
struct LayerNormOptions {
    /// The trailing axes normalized together, e.g. {H}.
    LayerNormOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT(google-explicit-constructor)
    /// The trailing axes normalized together; at least one axis, none of size 0.
    XGRAD_OPTION(Shape, normalized_shape);
    /// Added to the variance before its square root; > 0. 1e-5 unless set, as torch's.
    XGRAD_OPTION(double, eps) = 1e-5;
    /// Whether the module has a learned scale ("weight", ones) and shift ("bias", zeros). On unless set.
    XGRAD_OPTION(bool, elementwise_affine) = true;
};

/// Layer normalization (Ba et al. 2016), as torch.nn.LayerNorm: over the trailing axes given,
/// y = (x - mean) / sqrt(var + eps) · weight + bias, the variance biased (divided by the count).
/// Built from primitive ops, so its gradient is the graph's.
template <class T>
class LayerNorm : public Module<T> {
  public:
    /// An empty normalized_shape, an axis of size 0 or eps <= 0 throws std::invalid_argument.
    explicit LayerNorm(LayerNormOptions options);
    /// input (..., normalized_shape) -> the same shape; other trailing axes throw ShapeError naming both shapes.
    Var<T> forward(const Var<T>& input) const;
    /// The options it was built with.
    const LayerNormOptions& options() const { return options_; }

    Parameter<T> weight;  ///< normalized_shape, ones; undefined without elementwise_affine
    Parameter<T> bias;    ///< normalized_shape, zeros; undefined without elementwise_affine

  private:
    LayerNormOptions options_;
};

extern template class Linear<float>;
extern template class Linear<double>;
extern template class Embedding<float>;
extern template class Embedding<double>;
extern template class Dropout<float>;
extern template class Dropout<double>;
extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace xgrad::nn
