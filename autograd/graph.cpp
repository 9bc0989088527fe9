#include "graph.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "../tensor/linalg.hpp"

namespace xgrad {

namespace {
template <class ShapeType>
Shape to_shape(const ShapeType& s) {
    return Shape(s.begin(), s.end());
}

// a += b. Gradients meet with equal shapes: a flat loop then, as xtensor's += costs more than the
// additions at a small model's sizes (measured in commit e9647f7).
template <class T>
void add_into(Tensor<T>& a, const Tensor<T>& b) {
    if (a.shape() != b.shape()) {
        a += b;
        return;
    }
    T* out = a.data();
    const T* in = b.data();
    for (std::size_t k = 0, n = a.size(); k < n; ++k) out[k] += in[k];
}
}  // namespace

namespace detail {
bool& anomaly_mode() {
    thread_local bool on = false;
    return on;
}
bool& grad_mode() {
    thread_local bool on = true;
    return on;
}
}  // namespace detail

bool grad_enabled() { return detail::grad_mode(); }
bool anomaly_detection_enabled() { return detail::anomaly_mode(); }

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
const Tensor<T>& Var<T>::value() const& {
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
Var<T> Var<T>::detach(Graph<T>& into) const {
    return into.constant(value());
}

template <class T>
void Var<T>::backward(bool retain_graph) const {
    tape().backward(*this, nullptr, BackwardOptions().retain_graph(retain_graph));
}

// ---- Tape ----

template <class T>
Tape<T>::Tape() = default;

template <class T>
Tape<T>::~Tape() = default;

template <class T>
const PrepackedGemm<T>* Tape<T>::layout(const Var<T>& b, std::size_t m, bool trans_b) {
    b.check_alive();
    if (b.tape_.get() != this) return nullptr;
    return layout_of(b.index_, m, trans_b);
}

template <class T>
const PrepackedGemm<T>* Tape<T>::layout_of(std::uint32_t index, std::size_t m, bool trans_b) {
    const Node& n = nodes_[index];
    if (!n.is_leaf || n.value_freed || n.shape.size() != 2) return nullptr;
    Layout& slot = layouts_[{index, m, trans_b}];
    if (++slot.requests == 1) return nullptr;
    if (!slot.gemm) {
        const std::size_t rows = n.shape[0], cols = n.shape[1];
        const std::size_t k = trans_b ? cols : rows, width = trans_b ? rows : cols;
        slot.gemm = std::make_unique<PrepackedGemm<T>>(m, width, k, n.value.data(), trans_b, k, width);
    }
    return slot.gemm.get();
}

template <class T>
Var<T> Tape<T>::push(Node node) {
    if (nodes_.size() >= std::numeric_limits<std::uint32_t>::max()) {
        throw GraphError("Graph: more than 2^32 - 1 nodes");
    }
    if (anomaly_detection_enabled() && first_non_finite(node.value).has_value()) {
        std::string inputs;
        for (std::uint32_t j = 0; j < node.num_inputs; ++j) {
            inputs += (j ? ", " : "") + shape_str(to_shape(nodes_[input_ids_[node.first_input + j]].shape));
        }
        throw AnomalyError(fmt::format("anomaly: {} (node {}) produced NaN or Inf in its output of shape {}{}", node.op,
                                       nodes_.size(), shape_str(shape_of(node.value)),
                                       inputs.empty() ? "" : fmt::format(" from inputs of shapes {}", inputs)));
    }
    nodes_.push_back(std::move(node));
    return Var<T>(this->shared_from_this(), static_cast<std::uint32_t>(nodes_.size() - 1), generation_);
}

template <class T>
Var<T> Tape<T>::record(const char* op, Tensor<T> value, std::span<const Var<T>> inputs, BackwardFn<T> backward,
                       Saves saves) {
    Node n(op, std::move(value));
    n.first_input = static_cast<std::uint32_t>(input_ids_.size());
    n.num_inputs = static_cast<std::uint32_t>(inputs.size());
    bool any_requires_grad = false;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const Var<T>& in = inputs[i];
        if (!in.tape_) throw GraphError(fmt::format("{}: input {} is an empty variable handle", op, i));
        if (in.tape_.get() != this) {
            throw GraphError(fmt::format("{}: input {} comes from a different graph than input 0", op, i));
        }
        in.check_alive();
        any_requires_grad = any_requires_grad || nodes_[in.index_].requires_grad;
    }
    n.requires_grad = any_requires_grad && grad_enabled();
    if (!n.requires_grad) {
        n.num_inputs = 0;
        return push(std::move(n));
    }
    // Only nodes that will run backward need their inputs listed, and keep what they read (counted
    // once the node is on the tape: a refused node holds nothing).
    for (const Var<T>& in : inputs) input_ids_.push_back(in.index_);
    n.backward = std::move(backward);
    n.saves = saves;
    n.readers = saves.output ? 1 : 0;
    Var<T> out;
    try {
        out = push(std::move(n));
    } catch (...) {
        input_ids_.resize(input_ids_.size() - inputs.size());
        throw;
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        if (saves.has_input(i)) ++nodes_[inputs[i].index_].readers;
    }
    return out;
}

template <class T>
Var<T> Tape<T>::leaf(Tensor<T> value, bool requires_grad) {
    Node n("leaf", std::move(value));
    n.requires_grad = requires_grad;
    n.is_leaf = true;
    return push(std::move(n));
}

template <class T>
Var<T> Tape<T>::parameter(const Parameter<T>& p) {
    auto found = parameter_leaves_.find(p.id());
    if (found != parameter_leaves_.end()) return Var<T>(this->shared_from_this(), found->second, generation_);
    // Always requires grad, as in PyTorch: under NoGradGuard it is the ops that record nothing.
    Node n("parameter", p.value());
    n.requires_grad = true;
    n.is_leaf = true;
    n.parameter = p;
    Var<T> v = push(std::move(n));
    parameter_leaves_[p.id()] = v.index_;
    return v;
}

template <class T>
void Tape<T>::free_if_unused(Node& n) {
    // Parameter leaves stay: Tape::parameter hands out new handles to them.
    if (n.handles != 0 || n.readers != 0 || n.parameter.defined() || n.value_freed) return;
    Tensor<T> gone = std::move(n.value);
    n.value_freed = true;
}

template <class T>
std::size_t Tape<T>::value_bytes() const {
    std::size_t elements = 0;
    for (const Node& n : nodes_)
        if (!n.value_freed) elements += n.value.size();
    return elements * sizeof(T);
}

template <class T>
void Tape<T>::drop_readers(Node& n) {
    const std::uint32_t own = n.saves.output ? 1 : 0;
    for (std::uint32_t j = 0; j < n.num_inputs; ++j) {
        if (!n.saves.has_input(j)) continue;
        Node& in = nodes_[input_ids_[n.first_input + j]];
        --in.readers;
        free_if_unused(in);
    }
    n.readers -= own;
    n.saves = Saves::nothing();
    free_if_unused(n);
}

template <class T>
std::vector<Parameter<T>> Tape<T>::parameters() const {
    std::vector<Parameter<T>> out;
    for (const Node& n : nodes_)
        if (n.parameter.defined()) out.push_back(n.parameter);
    return out;
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
        if (seed->shape() != top.shape) {
            throw ShapeError(fmt::format("backward: seed gradient of shape {} for an output of shape {}",
                                         shape_str(shape_of(*seed)), shape_str(to_shape(top.shape))));
        }
    } else if (numel(to_shape(top.shape)) != 1) {
        throw ShapeError(fmt::format("backward: an implicit seed needs a one-element output, got shape {}",
                                     shape_str(to_shape(top.shape))));
    }
    // Which nodes this backward reaches; a freed one among them fails the call before any
    // gradient moves, so a backward refused for that leaves every gradient as it was. (An op's own
    // backward that throws midway does not undo what the nodes before it did.)
    std::vector<bool> reached(root.index_ + 1, false);
    reached[root.index_] = true;
    for (std::uint32_t i = root.index_ + 1; i-- > 0;) {
        const Node& n = nodes_[i];
        if (!reached[i] || !n.requires_grad) continue;
        if (n.released) {
            throw GraphError(fmt::format(
                "backward: node {} ({}) was already freed by an earlier backward; pass retain_graph=true to the "
                "first backward to run backward twice", i, n.op));
        }
        for (std::uint32_t j = 0; j < n.num_inputs; ++j) reached[input_ids_[n.first_input + j]] = true;
    }
    // Non-leaf gradients describe one backward pass; leaf gradients accumulate across passes.
    for (std::uint32_t i = 0; i <= root.index_; ++i) {
        if (!nodes_[i].is_leaf) nodes_[i].grad.reset();
    }
    if (seed) {
        top.grad = *seed;
    } else {
        top.grad = Tensor<T>::from_shape(top.shape);
        top.grad->fill(T(1));
    }

    for (std::uint32_t i = root.index_ + 1; i-- > 0;) {
        Node& n = nodes_[i];
        if (!n.grad) continue;  // nothing flowed here
        if (n.is_leaf) {
            if (n.parameter.defined()) {
                add_into(n.parameter.grad(), *n.grad);
                n.grad.reset();
            }
            continue;
        }
        if (n.backward) {
            BackwardContext<T> ctx(*this, n, options.retain_graph());
            n.backward(ctx);
            if (anomaly_detection_enabled()) check_gradients(i);
        }
        if (!options.retain_graph()) {
            n.backward = nullptr;
            n.released = true;
            drop_readers(n);
        }
        if (!n.retain_grad) n.grad.reset();
    }
}

template <class T>
void Tape<T>::check_gradients(std::uint32_t i) const {
    const Node& n = nodes_[i];
    for (std::uint32_t j = 0; j < n.num_inputs; ++j) {
        const std::uint32_t id = input_ids_[n.first_input + j];
        const Node& in = nodes_[id];
        if (in.grad && first_non_finite(*in.grad).has_value()) {
            throw AnomalyError(fmt::format("anomaly: the backward of {} (node {}, output shape {}) produced NaN or Inf in "
                                           "the gradient of its input {} ({}, node {}, shape {})", n.op, i,
                                           shape_str(to_shape(n.shape)), j, in.op, id, shape_str(to_shape(in.shape))));
        }
    }
}

template <class T>
void Tape<T>::clear() {
    // Release the storage itself: a Var that outlives its graph keeps only an empty tape alive. The
    // generation moves first: a Var held inside a node (captured by a backward function) is then
    // stale when the node is destroyed, and its release touches nothing.
    ++generation_;
    std::deque<Node> nodes;
    nodes.swap(nodes_);
    layouts_.clear();
    input_ids_ = {};
    parameter_leaves_ = {};
}

// ---- BackwardContext ----

template <class T>
typename Tape<T>::Node& BackwardContext<T>::input_node(std::size_t i) const {
    if (i >= node_.num_inputs) {
        throw GraphError(fmt::format("{} backward: input {} requested of a node with {} inputs", node_.op, i,
                                     node_.num_inputs));
    }
    return tape_.nodes_[tape_.input_ids_[node_.first_input + i]];
}

template <class T>
const Tensor<T>& BackwardContext<T>::output() const {
    if (!node_.saves.output) {
        throw GraphError(fmt::format("{} backward: reads its output, which the op's Saves does not list", node_.op));
    }
    return node_.value;
}

template <class T>
const Tensor<T>& BackwardContext<T>::input(std::size_t i) const {
    const auto& in = input_node(i);
    if (!node_.saves.has_input(i)) {
        throw GraphError(fmt::format("{} backward: reads input {}, which the op's Saves does not list", node_.op, i));
    }
    return in.value;
}

template <class T>
const PrepackedGemm<T>* BackwardContext<T>::input_layout(std::size_t i, std::size_t m, bool trans_b) const {
    input_node(i);  // checks i
    return tape_.layout_of(tape_.input_ids_[node_.first_input + i], m, trans_b);
}

template <class T>
Shape BackwardContext<T>::input_shape(std::size_t i) const {
    return to_shape(input_node(i).shape);
}

template <class T>
void BackwardContext<T>::accumulate(std::size_t i, Tensor<T> g) {
    auto& in = input_node(i);
    if (!in.requires_grad) return;
    if (g.shape() != in.shape) {
        const Shape gs = shape_of(g), is = to_shape(in.shape);
        if (broadcast_shapes(node_.op, is, gs) != gs) {
            throw GraphError(fmt::format("{} backward: gradient of shape {} does not reduce to input {}'s shape {}",
                                         node_.op, shape_str(gs), i, shape_str(is)));
        }
        g = sum_to(g, is);
    }
    if (in.grad) {
        add_into(*in.grad, g);
    } else {
        in.grad = std::move(g);
    }
}

template <class T>
Tensor<T>& BackwardContext<T>::input_grad(std::size_t i, bool* fresh) {
    auto& in = input_node(i);
    if (fresh) *fresh = !in.grad;
    if (!in.grad) {
        in.grad = Tensor<T>::from_shape(in.shape);
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
