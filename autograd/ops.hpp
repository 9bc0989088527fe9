/// @file
/// Differentiable ops. Each returns a new node on its inputs' graph; its backward is written
/// beside its forward in autograd/ops_*.cpp. Binary elementwise ops broadcast like numpy and
/// reduce gradients back to each input's shape. Every op checks its arguments and throws
/// ShapeError (or std::invalid_argument) naming the op and the shapes.
///
/// @code
///   auto h = xgrad::tanh(xgrad::matmul(x, w) + b);
///   auto loss = xgrad::cross_entropy(h, targets);
///   loss.backward();
/// @endcode
#pragma once

#include <initializer_list>
#include <optional>
#include <type_traits>
#include <vector>

#include "../tensor/options.hpp"
#include "../tensor/tensor.hpp"
#include "graph.hpp"

namespace xgrad {

class Generator;

template <class T>
using Scalar = std::type_identity_t<T>;  ///< a scalar argument that does not take part in deduction

// ---- elementwise ----
/// a + b, broadcast.
template <class T> Var<T> add(const Var<T>& a, const Var<T>& b);
/// a - b, broadcast.
template <class T> Var<T> sub(const Var<T>& a, const Var<T>& b);
/// a ⊙ b (elementwise), broadcast.
template <class T> Var<T> mul(const Var<T>& a, const Var<T>& b);
/// a / b (elementwise), broadcast.
template <class T> Var<T> div(const Var<T>& a, const Var<T>& b);
/// a + s for a scalar s.
template <class T> Var<T> add(const Var<T>& a, Scalar<T> s);
/// a · s for a scalar s.
template <class T> Var<T> mul(const Var<T>& a, Scalar<T> s);
template <class T> Var<T> rsub(const Var<T>& a, Scalar<T> s);  ///< s - a
template <class T> Var<T> rdiv(const Var<T>& a, Scalar<T> s);  ///< s / a
/// -a.
template <class T> Var<T> neg(const Var<T>& a);
/// e^a, elementwise.
template <class T> Var<T> exp(const Var<T>& a);
/// Natural logarithm, elementwise (NaN or -inf where a <= 0, as std::log).
template <class T> Var<T> log(const Var<T>& a);
/// a raised to a scalar power; the gradient is 0 where the exponent is 0.
template <class T> Var<T> pow(const Var<T>& a, Scalar<T> exponent);
/// a raised to an elementwise power, broadcast.
template <class T> Var<T> pow(const Var<T>& a, const Var<T>& exponent);  ///< needs a > 0 where exponent's grad is used
/// Square root, elementwise.
template <class T> Var<T> sqrt(const Var<T>& a);
template <class T> Var<T> abs(const Var<T>& a);  ///< gradient 0 at 0
/// Hyperbolic tangent, elementwise.
template <class T> Var<T> tanh(const Var<T>& a);
/// 1 / (1 + e^-a), elementwise; exactly 0 (never NaN) for very negative a.
template <class T> Var<T> sigmoid(const Var<T>& a);
/// max(a, 0), elementwise; the gradient is 0 at 0.
template <class T> Var<T> relu(const Var<T>& a);
/// min(max(a, lo), hi); the gradient passes where lo <= a <= hi. std::invalid_argument if lo > hi.
template <class T> Var<T> clamp(const Var<T>& a, Scalar<T> lo, Scalar<T> hi);
/// mask ? a : b, elementwise with broadcasting; the mask is a constant.
template <class T> Var<T> where(const Mask& mask, const Var<T>& a, const Var<T>& b);

// ---- linear algebra and shape ----
/// Matrix product through BLAS: (m,k)x(k,n), batched (b,m,k)x(b,k,n), or (b,m,k)x(k,n).
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b);
/// x Wᵀ + b, as torch.nn.functional.linear: x (..., in), weight (out, in), bias (out,) or an empty Var.
template <class T> Var<T> linear(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = {});
/// a with axes dim0 and dim1 swapped (negative axes count from the end).
template <class T> Var<T> transpose(const Var<T>& a, std::ptrdiff_t dim0, std::ptrdiff_t dim1);
/// a with its axes reordered: axis i of the result is axis dims[i] of a.
template <class T> Var<T> permute(const Var<T>& a, const std::vector<std::size_t>& dims);
/// The same elements, row-major, in a new shape with as many elements.
/// One dimension may be -1 (inferred).
template <class T> Var<T> reshape(const Var<T>& a, const std::vector<std::ptrdiff_t>& shape);
/// The parts joined along an existing axis; their shapes must match elsewhere.
template <class T> Var<T> concat(const std::vector<Var<T>>& parts, std::ptrdiff_t axis);
/// The parts, all of one shape, stacked along a new axis.
template <class T> Var<T> stack(const std::vector<Var<T>>& parts, std::ptrdiff_t axis);
/// The same from a braced list, as torch.cat({a, b}, -1): concat({h, context}, -1).
///@{
template <class T> Var<T> concat(std::initializer_list<Var<T>> parts, std::ptrdiff_t axis) { return concat(std::vector<Var<T>>(parts), axis); }
template <class T> Var<T> stack(std::initializer_list<Var<T>> parts, std::ptrdiff_t axis) { return stack(std::vector<Var<T>>(parts), axis); }
///@}
/// Elements [start, start + length) along axis; a negative start counts from the end, as in torch.narrow.
template <class T> Var<T> narrow(const Var<T>& a, std::ptrdiff_t axis, std::ptrdiff_t start, std::size_t length);
/// The index-th slice along axis, the axis removed; a negative index counts from the end
/// (select(h_n, 0, -1): the last layer's state), as in torch.select.
template <class T> Var<T> select(const Var<T>& a, std::ptrdiff_t axis, std::ptrdiff_t index);
/// Consecutive pieces of the given sizes along axis (they must add up to the axis length).
template <class T> std::vector<Var<T>> split(const Var<T>& a, const std::vector<std::size_t>& sizes, std::ptrdiff_t axis);
/// Pieces of split_size (the last may be smaller), as torch.split.
template <class T> std::vector<Var<T>> split(const Var<T>& a, std::size_t split_size, std::ptrdiff_t axis);

// ---- reductions ----
/// Sum of every element: a 0-d result.
template <class T> Var<T> sum(const Var<T>& a);
/// Sum over the given axes (distinct; negative count from the end; an empty list means every
/// axis), which are dropped, or kept as 1s with keepdims.
template <class T> Var<T> sum(const Var<T>& a, const std::vector<std::ptrdiff_t>& axes, bool keepdims = false);
/// Mean of every element: a 0-d result.
template <class T> Var<T> mean(const Var<T>& a);
/// Mean over the given axes, which are dropped or kept as sum's are.
template <class T> Var<T> mean(const Var<T>& a, const std::vector<std::ptrdiff_t>& axes, bool keepdims = false);
/// Maximum along one axis; the gradient goes to the first maximal element.
template <class T> Var<T> max(const Var<T>& a, std::ptrdiff_t axis, bool keepdims = false);
/// The position of the largest value along axis, the first of equal ones (NaN ranks highest, as in
/// torch.argmax); not differentiable.
template <class T> Indices argmax(const Var<T>& a, std::ptrdiff_t axis, bool keepdims = false);
/// The k largest (or smallest) values along axis, in order (equal values in their order along the
/// axis; NaN ranks highest), and their positions along it, as torch.topk. The values are
/// differentiable: their gradient goes back to the positions they came from.
template <class T>
struct TopK {
    Var<T> values;    ///< a's shape with k along axis
    Indices indices;  ///< the same shape
};
/// See TopK; k must be in [1, the axis length] (ShapeError).
template <class T> TopK<T> topk(const Var<T>& a, std::int64_t k, std::ptrdiff_t axis = -1, bool largest = true);
/// exp(a) normalized to sum to 1 along axis, computed shifted by the maximum (no overflow).
template <class T> Var<T> softmax(const Var<T>& a, std::ptrdiff_t axis);
/// log(softmax(a)) along axis, computed as a - max - log Σ exp(a - max): finite where softmax underflows.
template <class T> Var<T> log_softmax(const Var<T>& a, std::ptrdiff_t axis);

// ---- losses and layers ----
/// How a loss combines its values, as torch's `reduction`. With a mask (weights w ≥ 0), each value
/// counts w times.
enum class Reduction {
    none,  ///< no combining: the weighted values, shaped as they came (w · loss)
    mean,  ///< Σ w · loss / Σ w: the mean over what counts (NaN when nothing does, as PyTorch's)
    sum,   ///< Σ w · loss
};

/// Which targets cross_entropy() and accuracy() count, and how the loss is reduced.
/// Each option is a setter and a getter (XGRAD_OPTION), as torch's CrossEntropyLossOptions.
struct CrossEntropyOptions {
    using Reduction = xgrad::Reduction;  ///< the losses' reduction, by its older name here
    /// Targets equal to this contribute nothing.
    XGRAD_OPTION(std::int64_t, ignore_index) = -100;
    /// Over positions, weighted by the mask and 0 where ignored; mean unless set, as torch's default.
    /// With none, the loss has the targets' shape (ignored positions 0).
    XGRAD_OPTION(Reduction, reduction) = Reduction::mean;
};
/// Softmax cross-entropy from unnormalized logits and class indices, as torch's.
/// logits (..., C) with the classes last, targets of the leading shape (...). The mean is over
/// the counted positions: targets not equal to ignore_index, weighted by `mask` (shape (...), finite
/// weights >= 0) if given. With nothing counted the mean is NaN and the gradient zero, as in PyTorch.
/// A target outside [0, C) that is not ignore_index, or a negative or non-finite mask value,
/// throws std::invalid_argument.
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const Indices& targets, CrossEntropyOptions options = {},
                     const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
/// The share of positions where the largest logit is the target's, over the positions
/// cross_entropy counts with the same arguments (targets not equal to options.ignore_index,
/// weighted by mask; the reduction does not apply); NaN when none count.
template <class T>
double accuracy(const Var<T>& logits, const Indices& targets, CrossEntropyOptions options = {},
                const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
// Regression and binary losses: elementwise, then reduced (see mse_loss).

/// Options of mse_loss: (input - target)^2. As torch's, a Reduction converts to these options.
struct MSELossOptions {
    /// The reduction (mean unless given).
    MSELossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}  // NOLINT(google-explicit-constructor)
    /// Mean unless set, as torch's.
    XGRAD_OPTION(Reduction, reduction) = Reduction::mean;
};
/// Options of l1_loss: |input - target| (the gradient at 0 is 0, as torch's).
struct L1LossOptions {
    /// The reduction (mean unless given).
    L1LossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}  // NOLINT(google-explicit-constructor)
    /// Mean unless set, as torch's.
    XGRAD_OPTION(Reduction, reduction) = Reduction::mean;
};
/// Options of smooth_l1_loss: with d = input - target, d^2 / (2 beta) where |d| < beta, else
/// |d| - beta / 2. beta = 0 is l1_loss. beta < 0 throws std::invalid_argument.
struct SmoothL1LossOptions {
    /// The reduction (mean unless given).
    SmoothL1LossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}  // NOLINT(google-explicit-constructor)
    /// Mean unless set, as torch's.
    XGRAD_OPTION(Reduction, reduction) = Reduction::mean;
    /// Where the square turns linear, as torch's default.
    XGRAD_OPTION(double, beta) = 1.0;
};
/// Options of huber_loss: with d = input - target, d^2 / 2 where |d| <= delta, else
/// delta (|d| - delta / 2): smooth_l1_loss scaled by delta = beta. delta <= 0 throws std::invalid_argument.
struct HuberLossOptions {
    /// The reduction (mean unless given).
    HuberLossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}  // NOLINT(google-explicit-constructor)
    /// Mean unless set, as torch's.
    XGRAD_OPTION(Reduction, reduction) = Reduction::mean;
    /// Where the square turns linear, as torch's default.
    XGRAD_OPTION(double, delta) = 1.0;
};
/// Options of binary_cross_entropy_with_logits: with p = pos_weight for the element's class (the
/// input's last axis), -[p y log σ(x) + (1 - y) log(1 - σ(x))], computed without overflow for any
/// logit x. Targets y are probabilities (any real is accepted, as torch's).
template <class T>
struct BCEWithLogitsLossOptions {
    /// The reduction (mean unless given).
    BCEWithLogitsLossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}  // NOLINT(google-explicit-constructor)
    /// Mean unless set, as torch's.
    XGRAD_OPTION(Reduction, reduction) = Reduction::mean;
    /// Weight of the positive term per class: a 1-D tensor as long as the input's last axis (or
    /// one value for all); ShapeError otherwise. Empty: 1 for every class.
    XGRAD_OPTION(std::optional<Tensor<T>>, pos_weight);
};
/// mean((input - target)^2) by default.
/// This and the losses below compare `input` with `target` element by element (the same shape,
/// ShapeError otherwise; no broadcasting) and combine the values by the options' reduction, as
/// torch.nn.functional's. `mask` weighs the values: finite weights ≥ 0 of the input's shape or of
/// its leading axes (a (T, B) mask for a (T, B, D) input weighs each position's D values), so the
/// mean is over the masked elements: Σ w · loss / Σ w. (torch's BCE `weight` divides by the element
/// count instead: pass Reduction::sum and divide to match it.) A bad mask value throws
/// std::invalid_argument.
template <class T>
Var<T> mse_loss(const Var<T>& input, const Var<T>& target, MSELossOptions options = {},
                const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
/// mean(|input - target|) by default.
template <class T>
Var<T> l1_loss(const Var<T>& input, const Var<T>& target, L1LossOptions options = {},
               const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
/// The Huber-like loss torch calls smooth L1 (options.beta).
template <class T>
Var<T> smooth_l1_loss(const Var<T>& input, const Var<T>& target, SmoothL1LossOptions options = {},
                      const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
/// The Huber loss (options.delta).
template <class T>
Var<T> huber_loss(const Var<T>& input, const Var<T>& target, HuberLossOptions options = {},
                  const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
/// Binary cross-entropy on logits, numerically stable (options.pos_weight).
template <class T>
Var<T> binary_cross_entropy_with_logits(const Var<T>& input, const Var<T>& target,
                                        BCEWithLogitsLossOptions<Scalar<T>> options = {},
                                        const std::optional<Tensor<Scalar<T>>>& mask = std::nullopt);
/// Rows of weight (V, D) gathered by indices of any shape -> indices.shape + (D).
/// An index outside [0, V) throws std::invalid_argument.
template <class T> Var<T> embedding(const Var<T>& weight, const Indices& indices);
/// Inverted dropout: zero with probability p, scale the rest by 1/(1-p); identity when !training.
/// The mask comes from `gen`; p outside [0, 1] throws std::invalid_argument.
template <class T> Var<T> dropout(const Var<T>& a, double p, Generator& gen, bool training = true);

// ---- operators ----
/// add(a, b)
template <class T> Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
/// sub(a, b)
template <class T> Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
/// mul(a, b): elementwise, not a matrix product (matmul).
template <class T> Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
/// div(a, b)
template <class T> Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
/// neg(a)
template <class T> Var<T> operator-(const Var<T>& a) { return neg(a); }
/// Arithmetic with a scalar on either side, elementwise.
///@{
template <class T> Var<T> operator+(const Var<T>& a, Scalar<T> s) { return add(a, s); }
template <class T> Var<T> operator+(Scalar<T> s, const Var<T>& a) { return add(a, s); }
template <class T> Var<T> operator-(const Var<T>& a, Scalar<T> s) { return add(a, -s); }
template <class T> Var<T> operator-(Scalar<T> s, const Var<T>& a) { return rsub(a, s); }
template <class T> Var<T> operator*(const Var<T>& a, Scalar<T> s) { return mul(a, s); }
template <class T> Var<T> operator*(Scalar<T> s, const Var<T>& a) { return mul(a, s); }
template <class T> Var<T> operator/(const Var<T>& a, Scalar<T> s) { return mul(a, T(1) / s); }
template <class T> Var<T> operator/(Scalar<T> s, const Var<T>& a) { return rdiv(a, s); }
///@}

}  // namespace xgrad
