#include "graph.hpp"

#include <limits>

#include <fmt/format.h>

namespace xgrad {

namespace {
thread_local bool grad_mode_enabled = true;
}

bool grad_enabled() { return grad_mode_enabled; }
NoGradGuard::NoGradGuard() : previous_(grad_mode_enabled) { grad_mode_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_mode_enabled = previous_; }

// ---- Var ----

template <class T>
void Var<T>::check_alive() const {
    if (!tape_) throw GraphError("Var: use of an empty variable handle");
    if (tape_->generation_ != generation_) {
        throw GraphError(fmt::format("Var: node {} belongs to a graph that was cleared or destroyed", index_));
    }
}

template <class T>
Tape<T>& Var<T>::tape() const {
    check_alive();
    return *tape_;
}

template <class T>
const Tensor<T>& Var<T>::value() const {
    check_alive();
    return tape_->nodes_[index_].value;
}

template <class T>
bool Var<T>::has_grad() const {
    check_alive();
    return tape_->nodes_[index_].grad.has_value();
}

template <class T>
const Tensor<T>& Var<T>::grad() const {
    check_alive();
    const auto& n = tape_->nodes_[index_];
    if (!n.requires_grad) throw GraphError(fmt::format("Var::grad: node {} does not require grad", index_));
    if (!n.grad) {
        throw GraphError(fmt::format(
            "Var::grad: node {} has no gradient (run backward first; non-leaf nodes need retain_grad())", index_));
    }
    return *n.grad;
}

template <class T>
T Var<T>::item() const {
    const Tensor<T>& v = value();
    if (v.size() != 1) throw ShapeError(fmt::format("item: expected one element, got shape {}", shape_str(shape())));
    return v.data()[0];
}

template <class T>
bool Var<T>::requires_grad() const {
    check_alive();
    return tape_->nodes_[index_].requires_grad;
}

template <class T>
void Var<T>::retain_grad() const {
    check_alive();
    tape_->nodes_[index_].retain_grad = true;
}

template <class T>
Var<T> Var<T>::detach() const {
    return tape().leaf(value(), false);
}

template <class T>
void Var<T>::backward(bool retain_graph) const {
    tape().backward(*this, nullptr, BackwardOptions{retain_graph});
}

// ---- Tape ----

template <class T>
Var<T> Tape<T>::push(Node node) {
    if (nodes_.size() >= std::numeric_limits<std::uint32_t>::max()) {
        throw GraphError("Graph: more than 2^32 - 1 nodes");
    }
    nodes_.push_back(std::move(node));
    return Var<T>(this->shared_from_this(), static_cast<std::uint32_t>(nodes_.size() - 1), generation_);
}

template <class T>
Var<T> Tape<T>::record(Tensor<T> value, std::span<const Var<T>> inputs, BackwardFn<T> backward) {
    Node n(std::move(value));
    n.first_input = static_cast<std::uint32_t>(input_ids_.size());
    n.num_inputs = static_cast<std::uint32_t>(inputs.size());
    bool any_requires_grad = false;
    for (const Var<T>& in : inputs) {
        in.check_alive();
        if (in.tape_.get() != this) throw GraphError("Graph: an op's inputs come from two different graphs");
        any_requires_grad = any_requires_grad || nodes_[in.index_].requires_grad;
    }
    n.requires_grad = any_requires_grad && grad_mode_enabled;
    if (n.requires_grad) {
        // Only nodes that will run backward need their inputs listed.
        for (const Var<T>& in : inputs) input_ids_.push_back(in.index_);
        n.backward = std::move(backward);
    } else {
        n.num_inputs = 0;
    }
    return push(std::move(n));
}

template <class T>
Var<T> Tape<T>::leaf(Tensor<T> value, bool requires_grad) {
    Node n(std::move(value));
    n.requires_grad = requires_grad;
    n.is_leaf = true;
    return push(std::move(n));
}

template <class T>
Var<T> Tape<T>::parameter(const Parameter<T>& p) {
    auto found = parameter_leaves_.find(p.id());
    // A leaf recorded under NoGradGuard is not reused once grad mode is back on.
    if (found != parameter_leaves_.end() && (nodes_[found->second].requires_grad || !grad_mode_enabled)) {
        return Var<T>(this->shared_from_this(), found->second, generation_);
    }
    Node n(p.value());
    n.requires_grad = grad_mode_enabled;
    n.is_leaf = true;
    n.parameter = p;
    Var<T> v = push(std::move(n));
    parameter_leaves_[p.id()] = v.index_;
    return v;
}

template <class T>
void Tape<T>::backward(const Var<T>& root, const Tensor<T>* seed, BackwardOptions options) {
    root.check_alive();
    if (root.tape_.get() != this) throw GraphError("backward: the root belongs to another graph");
    Node& top = nodes_[root.index_];
    if (!top.requires_grad) {
        throw GraphError("backward: the output does not require grad (no input requires grad, or it was "
                         "computed under NoGradGuard)");
    }
    if (seed) {
        if (seed->shape() != top.value.shape()) {
            throw ShapeError(fmt::format("backward: seed gradient of shape {} for an output of shape {}",
                                         shape_str(shape_of(*seed)), shape_str(shape_of(top.value))));
        }
    } else if (top.value.size() != 1) {
        throw ShapeError(fmt::format("backward: an implicit seed needs a one-element output, got shape {}",
                                     shape_str(shape_of(top.value))));
    }
    // Non-leaf gradients describe one backward pass; leaf gradients accumulate across passes.
    for (std::uint32_t i = 0; i <= root.index_; ++i) {
        if (!nodes_[i].is_leaf) nodes_[i].grad.reset();
    }
    if (seed) {
        top.grad = *seed;
    } else {
        top.grad = Tensor<T>::from_shape(top.value.shape());
        top.grad->fill(T(1));
    }

    for (std::uint32_t i = root.index_ + 1; i-- > 0;) {
        Node& n = nodes_[i];
        if (!n.grad) continue;  // nothing flowed here
        if (n.is_leaf) {
            if (n.parameter.defined()) {
                n.parameter.grad() += *n.grad;
                n.grad.reset();
            }
            continue;
        }
        if (n.released) {
            throw GraphError(fmt::format(
                "backward: node {} was already freed by an earlier backward; pass retain_graph=true to the "
                "first backward to run backward twice", i));
        }
        if (n.backward) {
            BackwardContext<T> ctx(*this, n);
            n.backward(ctx);
        }
        if (!options.retain_graph) {
            n.backward = nullptr;
            n.released = true;
        }
        if (!n.retain_grad) n.grad.reset();
    }
}

template <class T>
void Tape<T>::clear() {
    nodes_.clear();
    input_ids_.clear();
    parameter_leaves_.clear();
    ++generation_;
}

// ---- BackwardContext ----

template <class T>
void BackwardContext<T>::accumulate(std::size_t i, Tensor<T> g) {
    auto& in = input_node(i);
    if (!in.requires_grad) return;
    if (g.shape() != in.value.shape()) g = sum_to(g, shape_of(in.value));
    if (in.grad) {
        *in.grad += g;
    } else {
        in.grad = std::move(g);
    }
}

template <class T>
Tensor<T>& BackwardContext<T>::input_grad(std::size_t i, bool* fresh) {
    auto& in = input_node(i);
    if (fresh) *fresh = !in.grad;
    if (!in.grad) {
        in.grad = Tensor<T>::from_shape(in.value.shape());
        if (!fresh) in.grad->fill(T(0));
    }
    return *in.grad;
}

template class Var<float>;
template class Var<double>;
template class Tape<float>;
template class Tape<double>;
template class BackwardContext<float>;
template class BackwardContext<double>;

}  // namespace xgrad
