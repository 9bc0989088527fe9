// A trainable tensor that outlives graphs. Copies are handles to the same storage, so a module,
// an optimizer and a graph all see one value and one gradient.
//
//   xgrad::Parameter<float> w(xt::zeros<float>({3, 4}));
//   ... graph.parameter(w) ... loss.backward();   // adds into w.grad()
//   w.zero_grad();
#pragma once

#include <memory>

#include "../tensor/tensor.hpp"

namespace xgrad {

template <class T>
class Parameter {
  public:
    Parameter() = default;  // an undefined handle; defined() is false
    explicit Parameter(Tensor<T> value)
        : data_(std::make_shared<Data>(Data{std::move(value), {}})) { zero_grad(); }

    bool defined() const { return data_ != nullptr; }
    Tensor<T>& value() { return data().value; }
    const Tensor<T>& value() const { return data().value; }
    // Accumulated gradient, always of the value's shape (zeros until a backward adds into it).
    Tensor<T>& grad() { return data().grad; }
    const Tensor<T>& grad() const { return data().grad; }
    Shape shape() const { return shape_of(data().value); }
    std::size_t numel() const { return data().value.size(); }
    void zero_grad() {
        Data& d = data();
        if (d.grad.shape() != d.value.shape()) d.grad = Tensor<T>::from_shape(d.value.shape());
        d.grad.fill(T(0));
    }
    // Identity of the shared storage: two handles to one parameter compare equal.
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
