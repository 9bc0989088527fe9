/// @file
/// The tape: a graph owns its nodes in creation order; a Var is a light handle (graph, index,
/// generation). Every input of a node has a smaller index than the node, so backward is one
/// reverse loop over the nodes: no recursion, no topological sort, no reference counts between
/// nodes (a node counts only its own handles and readers, to free its value). Clearing the graph frees everything at once and invalidates every handle into it.
///
/// A node's value lives while a Var refers to it or a backward still to run reads it (each op
/// says which values its backward reads: Saves). Every other intermediate is freed as soon as its
/// last handle goes, as PyTorch frees a tensor that nothing refers to: a graph holds what its
/// backward needs, not every value it computed. A graph and its Vars are used from one thread.
///
/// @code
///   xgrad::Graph<double> g;
///   auto x = g.variable(xt::xarray<double>{1.0, 2.0});   // a leaf whose gradient we want
///   auto y = xgrad::sum(x * x);
///   y.backward();
///   x.grad();                                           // {2.0, 4.0}
/// @endcode
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "../tensor/options.hpp"
#include "../tensor/tensor.hpp"
#include "parameter.hpp"

namespace xgrad {

/// Misuse of the graph: a handle used after its graph was cleared, a second backward through a
/// released graph, inputs from two different graphs.
class GraphError : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

template <class T>
class Tape;
template <class T>
class Graph;
template <class T>
class PrepackedGemm;  // tensor/linalg.hpp
template <class T>
class BackwardContext;

/// A node's backward: reads the output's gradient and what the op saved through the context, and
/// adds each input's gradient (BackwardContext::accumulate or input_grad).
template <class T>
using BackwardFn = std::function<void(BackwardContext<T>&)>;

/// Which values a node's backward reads besides the gradients: its output, and inputs by position
/// (inputs from position 31 on share the last bit). BackwardContext::output() and input(i) raise
/// GraphError for a value not listed, so an op that reads more than it declares fails every time,
/// not only when the value happened to be freed.
struct Saves {
    /// The backward reads the node's own output value.
    bool output = false;
    /// Bit i set: the backward reads input i (bit 31 stands for every input from 31 on).
    std::uint32_t inputs = 0;

    /// Reads no value: the gradient alone suffices (add, sum).
    static constexpr Saves nothing() { return {}; }
    /// The output and every input: always correct, but keeps every input alive until backward.
    static constexpr Saves everything() { return {true, ~std::uint32_t(0)}; }
    /// The output alone (tanh, sigmoid, exp: their derivatives follow from the result).
    static constexpr Saves output_only() { return {true, 0}; }
    /// Every input, not the output.
    static constexpr Saves all_inputs() { return {false, ~std::uint32_t(0)}; }
    /// Input i alone; combine several with operator| or inputs_of.
    static constexpr Saves input(std::size_t i) { return {false, bit(i)}; }
    /// The inputs at these positions.
    static constexpr Saves inputs_of(std::initializer_list<std::size_t> positions) {
        Saves s;
        for (std::size_t i : positions) s.inputs |= bit(i);
        return s;
    }
    /// Everything either of the two reads.
    constexpr Saves operator|(Saves other) const { return {output || other.output, inputs | other.inputs}; }
    /// These values only if `needed`: a product keeps a only when b's gradient will need it.
    constexpr Saves when(bool needed) const { return needed ? *this : Saves{}; }
    /// Whether input i is listed (positions from 31 on share one bit).
    constexpr bool has_input(std::size_t i) const { return (inputs & bit(i)) != 0; }
    /// The bit of input i in `inputs`.
    static constexpr std::uint32_t bit(std::size_t i) { return std::uint32_t(1) << (i < 31 ? i : 31); }
};

/// A handle on one node of a Graph: its value, its gradient after backward, and the input of
/// further ops (`x * w + b`). Cheap to copy; every copy keeps the node's value alive (see the
/// file's description). Reading it after its graph was cleared or destroyed throws GraphError.
template <class T>
class Var {
  public:
    Var() = default;  ///< an empty handle; defined() is false
    /// Copies count as handles on the node: its value is freed with the last one (see the top).
    Var(const Var& other) : tape_(other.tape_), index_(other.index_), generation_(other.generation_) { acquire(); }
    /// Takes over `other`'s handle; `other` is left empty.
    Var(Var&& other) noexcept
        : tape_(std::move(other.tape_)), index_(other.index_), generation_(other.generation_) {}
    /// Refers to `other`'s node, releasing the node this handle referred to.
    Var& operator=(const Var& other) {
        Var copy(other);
        return *this = std::move(copy);
    }
    /// Takes over `other`'s handle, releasing the node this one referred to; `other` is left empty.
    Var& operator=(Var&& other) noexcept {
        if (this != &other) {
            release();
            tape_ = std::move(other.tape_);
            index_ = other.index_;
            generation_ = other.generation_;
        }
        return *this;
    }
    /// Releases the handle: the node's value is freed with its last handle, unless a backward still to run reads it.
    ~Var() { release(); }

    /// False for a default-constructed or moved-from handle.
    bool defined() const { return tape_ != nullptr; }
    /// The node's value; the reference stays valid while this handle lives and the graph is not cleared.
    const Tensor<T>& value() const&;
    /// A temporary's value is a copy: the node may be freed with the temporary itself, so
    /// `const auto& v = op(x).value();` never dangles.
    Tensor<T> value() const&& { return value(); }
    /// Gradient from the latest backward: leaves and retain_grad() nodes only.
    /// A variable leaf's gradient adds up over backwards on the same graph; a parameter leaf's goes
    /// to Parameter::grad() instead. Throws GraphError when the node does not require grad or has
    /// no gradient (no backward yet, or a non-leaf without retain_grad()).
    const Tensor<T>& grad() const;
    /// Whether grad() would return a gradient rather than throw.
    bool has_grad() const;
    /// The value's shape, as a Shape (a copy).
    Shape shape() const { return shape_of(value()); }
    /// Number of dimensions of the value (0 for a scalar).
    std::size_t dim() const { return value().dimension(); }
    /// Number of elements of the value.
    std::size_t numel() const { return value().size(); }
    T item() const;  ///< the value of a one-element tensor; ShapeError for any other size
    /// Whether backward computes a gradient for this node: variable and parameter leaves, and what
    /// ops computed from them with grad mode on.
    bool requires_grad() const;

    /// Keep this non-leaf node's gradient after backward (for inspection, e.g. dL/dh_t).
    void retain_grad() const;
    /// A constant leaf holding a copy of this value: gradients stop here. With `into`, the leaf is
    /// recorded in that graph, which is how a hidden state carries over to the next chunk in
    /// truncated BPTT (the old graph can then be cleared).
    ///@{
    Var detach() const;
    Var detach(Graph<T>& into) const;
    ///@}
    /// Backpropagates from this one-element value (loss.backward()).
    /// Without retain_graph, what the graph kept for backward is freed as it goes and a second
    /// backward through the same nodes throws GraphError. Throws ShapeError unless the value has
    /// one element, GraphError if it does not require grad.
    void backward(bool retain_graph = false) const;

    /// The node's tape, where ops record their results (Tape::record).
    Tape<T>& tape() const;
    /// The node's position on its tape: every input of a node has a smaller one.
    std::uint32_t index() const { return index_; }

  private:
    friend class Tape<T>;
    Var(std::shared_ptr<Tape<T>> tape, std::uint32_t index, std::uint64_t generation)
        : tape_(std::move(tape)), index_(index), generation_(generation) {
        acquire();
    }
    void check_alive() const;
    void acquire() const;
    void release() noexcept;

    std::shared_ptr<Tape<T>> tape_;
    std::uint32_t index_ = 0;
    std::uint64_t generation_ = 0;
};

/// How Graph::backward runs; an option is a setter and a getter (XGRAD_OPTION): `BackwardOptions().retain_graph(true)`.
struct BackwardOptions {
    /// Keep the backward functions (and what they saved) so backward can run again.
    XGRAD_OPTION(bool, retain_graph) = false;
};

/// The storage behind a Graph. Ops record into it through Var::tape().
template <class T>
class Tape : public std::enable_shared_from_this<Tape<T>> {
  public:
    /// An empty tape; a Graph makes its own.
    Tape();
    /// Frees every node.
    ~Tape();
    /// Not copyable: Vars point into this very tape.
    ///@{
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;
    ///@}

    /// Adds a node computed by `op` (a name with static storage, used in messages) from `inputs`.
    /// `backward` runs only if some input requires grad and grad mode is on; otherwise it is
    /// dropped at once.
    /// `saves` lists what `backward` reads (the default, everything, is always correct but keeps
    /// every input alive until backward).
    /// Throws GraphError for an empty input or inputs from another graph, AnomalyError for a
    /// non-finite value inside a DetectAnomalyGuard.
    Var<T> record(const char* op, Tensor<T> value, std::span<const Var<T>> inputs, BackwardFn<T> backward,
                  Saves saves = Saves::everything());
    /// The same with the inputs as a braced list: `record("mul", v, {a, b}, ...)`.
    Var<T> record(const char* op, Tensor<T> value, std::initializer_list<Var<T>> inputs, BackwardFn<T> backward,
                  Saves saves = Saves::everything()) {
        return record(op, std::move(value), std::span<const Var<T>>(inputs.begin(), inputs.size()),
                      std::move(backward), saves);
    }
    /// A leaf holding `value`: a variable (Graph::variable) with requires_grad, else a constant.
    Var<T> leaf(Tensor<T> value, bool requires_grad);
    /// See Graph::parameter: one leaf per parameter and tape, whose gradient backward adds into p.grad().
    Var<T> parameter(const Parameter<T>& p);
    /// The parameters recorded as leaves, in the order they were first used.
    std::vector<Parameter<T>> parameters() const;
    /// Backward from `root`, seeded with `*seed` (root's shape), or with 1 for a one-element root
    /// when `seed` is null. Throws as Graph::backward does.
    void backward(const Var<T>& root, const Tensor<T>* seed, BackwardOptions options);
    /// See Graph::clear.
    void clear();
    /// Number of nodes recorded, freed values included.
    std::size_t size() const { return nodes_.size(); }
    /// See Graph::value_bytes.
    std::size_t value_bytes() const;
    /// Counts clear() calls: a Var made in another generation refers to a cleared node.
    std::uint64_t generation() const { return generation_; }
    /// op(b) laid out once for products of m rows against the 2-D leaf b (a weight applied at every
    /// time step), kept with the graph: a recurrent weight is then laid out once per graph instead of
    /// inside every step's GEMM. Null at the first such request (a weight used once gains nothing from
    /// a copy), when b is not a leaf, whose value the layout could not follow, and when b is on another
    /// graph (the op's own check names that).
    const PrepackedGemm<T>* layout(const Var<T>& b, std::size_t m, bool trans_b);

  private:
    friend class Var<T>;
    friend class BackwardContext<T>;
    struct Node {
        Node(const char* op_name, Tensor<T> v) : op(op_name), value(std::move(v)), shape(value.shape()) {}
        const char* op;
        Tensor<T> value;  // moved out once freed (value_freed)
        typename Tensor<T>::shape_type shape;  // the value's, kept when the value is freed
        std::optional<Tensor<T>> grad;  // empty until backward reaches the node
        BackwardFn<T> backward;
        Parameter<T> parameter;  // defined for parameter leaves
        std::uint32_t first_input = 0;
        std::uint32_t num_inputs = 0;
        std::uint32_t handles = 0;  // live Vars on this node
        std::uint32_t readers = 0;  // backwards still to run that read this value
        Saves saves;                // what this node's own backward reads
        bool requires_grad = false;
        bool is_leaf = false;
        bool retain_grad = false;
        bool released = false;  // its backward was freed by a backward without retain_graph
        bool value_freed = false;
    };
    Var<T> push(Node node);
    void free_if_unused(Node& node);
    void drop_readers(Node& node);  // after its backward is released: it reads nothing any more
    const PrepackedGemm<T>* layout_of(std::uint32_t index, std::size_t m, bool trans_b);
    void check_gradients(std::uint32_t node) const;  // anomaly mode: its inputs' gradients are finite

    // A deque keeps references to values stable while later ops append nodes.
    std::deque<Node> nodes_;
    std::vector<std::uint32_t> input_ids_;  // every node's inputs, back to back
    std::unordered_map<const void*, std::uint32_t> parameter_leaves_;
    struct Layout {
        std::size_t requests = 0;
        std::unique_ptr<PrepackedGemm<T>> gemm;
    };
    std::map<std::tuple<std::uint32_t, std::size_t, bool>, Layout> layouts_;
    std::uint64_t generation_ = 0;
};

template <class T>
void Var<T>::acquire() const {
    if (tape_ && tape_->generation_ == generation_) ++tape_->nodes_[index_].handles;
}

template <class T>
void Var<T>::release() noexcept {
    if (!tape_ || tape_->generation_ != generation_) return;
    auto& node = tape_->nodes_[index_];
    if (--node.handles == 0) tape_->free_if_unused(node);
}

/// What a backward function sees: the node's output and its gradient, its inputs' values, and
/// where to add its inputs' gradients.
template <class T>
class BackwardContext {
  public:
    const Tensor<T>& output() const;  ///< needs Saves::output
    /// d(loss)/d(output), of the output's shape.
    const Tensor<T>& output_grad() const { return *node_.grad; }
    /// Number of inputs the node was recorded with.
    std::size_t num_inputs() const { return node_.num_inputs; }
    /// The op's name as recorded, for error messages.
    const char* op() const { return node_.op; }
    const Tensor<T>& input(std::size_t i) const;  ///< needs input i in the op's Saves
    Shape input_shape(std::size_t i) const;       ///< any input's, saved or not
    /// Whether input i has the output's shape, so that no broadcast has to be summed away.
    bool input_has_output_shape(std::size_t i) const { return input_node(i).shape == node_.shape; }
    /// Tape::layout for input i. Null at the first request and for anything but a live 2-D leaf: the
    /// op then reads input(i), so it still lists it in its Saves.
    const PrepackedGemm<T>* input_layout(std::size_t i, std::size_t m, bool trans_b) const;
    /// Whether input i requires a gradient: skip computing one that nothing reads.
    bool needs_grad(std::size_t i) const { return input_node(i).requires_grad; }
    /// Adds `g` into input i's gradient, first summing away any dimensions that broadcasting
    /// added (so `g` may have the output's shape).
    void accumulate(std::size_t i, Tensor<T> g);
    /// Input i's gradient buffer, for scatter-style updates: zero-filled on first use. A
    /// caller that overwrites the whole buffer (a GEMM with beta = 0) passes `fresh`: the new
    /// buffer is then left unfilled and *fresh tells whether it was just created.
    Tensor<T>& input_grad(std::size_t i, bool* fresh = nullptr);
    /// Whether this backward keeps the graph for another one: if not, what the op saved is the op's
    /// to reuse as scratch (the fused kernel turns its gate activations into gate gradients in place).
    bool retain_graph() const { return retain_graph_; }

  private:
    friend class Tape<T>;
    BackwardContext(Tape<T>& tape, typename Tape<T>::Node& node, bool retain_graph)
        : tape_(tape), node_(node), retain_graph_(retain_graph) {}
    typename Tape<T>::Node& input_node(std::size_t i) const;
    Tape<T>& tape_;
    typename Tape<T>::Node& node_;
    bool retain_graph_;
};

/// The user's handle on a tape. Destroying or clearing it frees every node and makes every Var
/// into it raise GraphError on use.
template <class T>
class Graph {
  public:
    /// An empty graph with a tape of its own.
    Graph() : tape_(std::make_shared<Tape<T>>()) {}
    /// Frees every node; Vars that outlive the graph raise GraphError on use.
    ~Graph() { tape_->clear(); }
    /// Not copyable: every Var refers to this graph's tape.
    ///@{
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    ///@}

    /// A leaf that does not need a gradient (data, targets, masks).
    Var<T> constant(Tensor<T> value) { return tape_->leaf(std::move(value), false); }
    /// A leaf whose gradient backward computes (read it with Var::grad()).
    Var<T> variable(Tensor<T> value) { return tape_->leaf(std::move(value), true); }
    /// The parameter as a leaf of this graph (recorded once per graph); backward adds its
    /// gradient into p.grad().
    Var<T> parameter(const Parameter<T>& p) { return tape_->parameter(p); }

    /// Backward from a one-element root, as root.backward() (d(root) = 1). Throws ShapeError for a
    /// root of more elements, GraphError for a root on another graph or one that does not require
    /// grad, or when part of the graph was freed by an earlier backward without retain_graph.
    void backward(const Var<T>& root, BackwardOptions options = {}) { tape_->backward(root, nullptr, options); }
    /// Backward from a non-scalar root, seeded with d(loss)/d(root) = seed.
    /// The seed must have root's shape (ShapeError); otherwise throws as the one-element form.
    void backward(const Var<T>& root, const Tensor<T>& seed, BackwardOptions options = {}) {
        tape_->backward(root, &seed, options);
    }
    /// Frees every node at once, so the graph can record the next step from empty; every Var into
    /// it raises GraphError on use from now on.
    void clear() { tape_->clear(); }
    /// Number of nodes recorded since construction or the last clear(), freed values included.
    std::size_t size() const { return tape_->size(); }
    /// Bytes of node values the graph holds now: leaves, values a Var refers to, and what the
    /// backwards still to run read (freed intermediates are not counted).
    std::size_t value_bytes() const { return tape_->value_bytes(); }
    Tape<T>& tape() { return *tape_; }  ///< for ops that record without an input variable

  private:
    std::shared_ptr<Tape<T>> tape_;
};

/// Anomaly detection, per thread: inside a DetectAnomalyGuard every op checks its output for NaN or
/// Inf as it is recorded, and backward checks every gradient each node's backward produces. The
/// AnomalyError names the op, its position on the tape and the shapes. Off by default: it reads every value.
class AnomalyError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};
/// A per-thread mode switched for a guard's lifetime and restored after it, however the scope ends:
/// the one mechanism behind DetectAnomalyGuard and NoGradGuard.
class ScopedMode {
  public:
    /// A guard belongs to its scope.
    ///@{
    ScopedMode(const ScopedMode&) = delete;
    ScopedMode& operator=(const ScopedMode&) = delete;
    ///@}

  protected:
    /// Sets `mode` to `value`, remembering what it was.
    ScopedMode(bool& mode, bool value) : mode_(mode), previous_(mode) { mode = value; }
    /// Restores the mode to what it was at construction.
    ~ScopedMode() { mode_ = previous_; }

  private:
    bool& mode_;
    bool previous_;
};

namespace detail {
bool& anomaly_mode();  // this thread's modes
bool& grad_mode();
}  // namespace detail

/// Whether this thread is inside a DetectAnomalyGuard.
bool anomaly_detection_enabled();
/// Anomaly detection on in this thread for the guard's lifetime (torch.autograd.detect_anomaly):
/// a NaN or Inf in any op's output or any backward's gradients throws AnomalyError.
class DetectAnomalyGuard : ScopedMode {
  public:
    /// Turns detection on until the guard is destroyed.
    DetectAnomalyGuard() : ScopedMode(detail::anomaly_mode(), true) {}
};

/// Grad mode, per thread. Inside a NoGradGuard ops record values only: no backward functions
/// are kept, and their results do not require grad.
bool grad_enabled();
/// Grad mode off in this thread for the guard's lifetime (torch.no_grad): for evaluation and
/// sampling, where nothing needs a backward.
class NoGradGuard : ScopedMode {
  public:
    /// Turns grad mode off until the guard is destroyed.
    NoGradGuard() : ScopedMode(detail::grad_mode(), false) {}
};
/// Grad mode on inside, whatever it is outside (torch.enable_grad), as checkpoint's recomputation needs.
class EnableGradGuard : ScopedMode {
  public:
    /// Turns grad mode on until the guard is destroyed.
    EnableGradGuard() : ScopedMode(detail::grad_mode(), true) {}
};

extern template class Var<float>;
extern template class Var<double>;
extern template class Tape<float>;
extern template class Tape<double>;
extern template class BackwardContext<float>;
extern template class BackwardContext<double>;

}  // namespace xgrad
