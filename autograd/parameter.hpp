/// @file
/// A trainable tensor that outlives graphs. Copies are handles to the same storage, so a module,
/// an optimizer and a graph all see one value and one gradient.
///
/// @code
///   xgrad::Parameter<float> w(xt::zeros<float>({3, 4}));
///   ... graph.parameter(w) ... loss.backward();   // adds into w.grad()
///   w.zero_grad();
/// @endcode
#pragma once

#include <memory>

#include "../tensor/tensor.hpp"

namespace xgrad {

/// A trainable tensor that outlives graphs: a shared handle on a value and its accumulated
/// gradient. Copies are handles to the same storage, so a module, an optimizer and a graph all see
/// one value and one gradient. Every accessor of an undefined handle throws std::logic_error.
template <class T>
class Parameter {
  public:
    Parameter() = default;  ///< an undefined handle; defined() is false
    /// A new parameter holding `value`, its gradient zeros of the same shape.
    explicit Parameter(Tensor<T> value)
        : data_(std::make_shared<Data>(Data{std::move(value), {}})) { zero_grad(); }

    /// False for a default-constructed handle.
    bool defined() const { return data_ != nullptr; }
    /// The value, shared by every handle: writing it (an optimizer's step, loading a state dict)
    /// changes the parameter for all of them. Graphs record a copy when the parameter is used.
    ///@{
    Tensor<T>& value() { return data().value; }
    const Tensor<T>& value() const { return data().value; }
    ///@}
    /// Accumulated gradient, always of the value's shape (zeros until a backward adds into it).
    ///@{
    Tensor<T>& grad() { return data().grad; }
    const Tensor<T>& grad() const { return data().grad; }
    ///@}
    /// The value's shape, as a Shape (a copy).
    Shape shape() const { return shape_of(data().value); }
    /// Number of elements of the value.
    std::size_t numel() const { return data().value.size(); }
    /// Sets the gradient to zeros, reshaped to the value's shape if the value was replaced by one
    /// of another shape. Call it before each backward: backward adds into the gradient.
    void zero_grad() {
        Data& d = data();
        if (d.grad.shape() != d.value.shape()) d.grad = Tensor<T>::from_shape(d.value.shape());
        d.grad.fill(T(0));
    }
    /// Identity of the shared storage: two handles to one parameter compare equal.
    const void* id() const { return data_.get(); }

  private:
    struct Data {
        Tensor<T> value;
        Tensor<T> grad;
    };
    Data& data() const {
        if (!data_) throw std::logic_error("Parameter: use of an undefined parameter handle");
        return *data_;
    }
    std::shared_ptr<Data> data_;
};

}  // namespace xgrad
