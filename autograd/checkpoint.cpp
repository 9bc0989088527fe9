// checkpoint: one node on the caller's tape for a whole block; its backward recomputes the block on
// a fresh tape and backpropagates through it.
#include "checkpoint.hpp"

#include <memory>
#include <string>

#include <fmt/format.h>

#include "ops.hpp"

namespace xgrad {

namespace {
// Puts each generator back in a given state, and on destruction into the state it had before.
class GeneratorReplay {
  public:
    GeneratorReplay(const std::vector<Generator*>& generators, const std::vector<std::string>& states)
        : generators_(generators) {
        for (std::size_t i = 0; i < generators_.size(); ++i) {
            now_.push_back(generators_[i]->state());
            generators_[i]->set_state(states[i]);
        }
    }
    ~GeneratorReplay() {
        for (std::size_t i = 0; i < generators_.size(); ++i) generators_[i]->set_state(now_[i]);
    }
    GeneratorReplay(const GeneratorReplay&) = delete;
    GeneratorReplay& operator=(const GeneratorReplay&) = delete;

  private:
    const std::vector<Generator*>& generators_;
    std::vector<std::string> now_;
};
}  // namespace

// y = fn(x);   dx = the block's own backward, run on a recomputation of fn(x)
template <class T>
std::vector<Var<T>> checkpoint(const CheckpointFn<T>& fn, const std::vector<Var<T>>& inputs,
                               const std::vector<Generator*>& generators) {
    if (inputs.empty()) throw GraphError("checkpoint: needs at least one input (the outputs go on its tape)");
    Tape<T>& tape = inputs[0].tape();
    for (std::size_t i = 1; i < inputs.size(); ++i) {
        if (&inputs[i].tape() != &tape) throw GraphError(fmt::format("checkpoint: input {} is on another graph than input 0", i));
    }
    for (std::size_t i = 0; i < generators.size(); ++i) {
        if (!generators[i]) throw std::invalid_argument(fmt::format("checkpoint: generator {} is null", i));
    }
    std::vector<std::string> states;
    for (const Generator* g : generators) states.push_back(g->state());

    // The first run records nothing: only its outputs and the parameters it read are kept.
    std::vector<Tensor<T>> values;
    std::vector<Parameter<T>> params;
    {
        NoGradGuard no_grad;
        Graph<T> scratch;
        std::vector<Var<T>> leaves;
        for (const Var<T>& x : inputs) leaves.push_back(scratch.constant(x.value()));
        const std::vector<Var<T>> outputs = fn(leaves);
        if (outputs.empty()) throw GraphError("checkpoint: the function returned no outputs");
        for (const Var<T>& y : outputs) values.push_back(y.value());
        params = scratch.tape().parameters();
    }

    // The node's inputs: the given ones, then the parameters, so that it needs a gradient when they do.
    std::vector<Var<T>> node_inputs = inputs;
    for (const Parameter<T>& p : params) node_inputs.push_back(tape.parameter(p));
    const std::size_t n_out = values.size(), n_in = inputs.size();
    std::vector<Shape> shapes;
    for (const Tensor<T>& v : values) shapes.push_back(shape_of(v));
    // The gradients of the outputs after the first, handed to the main node's backward by their own
    // small nodes (which run first: they were recorded after it).
    auto later = std::make_shared<std::vector<std::optional<Tensor<T>>>>(n_out);

    Tensor<T> first = std::move(values[0]);
    Var<T> main = tape.record("checkpoint", std::move(first), std::span<const Var<T>>(node_inputs),
                              [fn, n_in, n_out, shapes, later, generators, states](BackwardContext<T>& c) {
        GeneratorReplay replay(generators, states);
        EnableGradGuard grad_on;
        Graph<T> again;
        std::vector<Var<T>> leaves;
        for (std::size_t i = 0; i < n_in; ++i) leaves.push_back(c.needs_grad(i) ? again.variable(c.input(i)) : again.constant(c.input(i)));
        const std::vector<Var<T>> outputs = fn(leaves);
        if (outputs.size() != n_out) {
            throw GraphError(fmt::format("checkpoint: the recomputation returned {} outputs, the first run {}", outputs.size(), n_out));
        }
        // Seed each output with its gradient: Σ_i <y_i, g_i> has exactly those gradients.
        std::optional<Var<T>> total;
        for (std::size_t i = 0; i < n_out; ++i) {
            if (outputs[i].shape() != shapes[i]) {
                throw GraphError(fmt::format("checkpoint: the recomputation gave output {} the shape {}, the first run {}", i,
                                             shape_str(outputs[i].shape()), shape_str(shapes[i])));
            }
            std::optional<Tensor<T>> g = i == 0 ? std::optional<Tensor<T>>(c.output_grad()) : std::move((*later)[i]);
            (*later)[i].reset();
            if (!g || !outputs[i].requires_grad()) continue;
            const Var<T> term = sum(outputs[i] * again.constant(std::move(*g)));
            total = total ? *total + term : term;
        }
        if (!total) return;
        again.backward(*total);  // the parameters' gradients go straight into them
        for (std::size_t i = 0; i < n_in; ++i) {
            if (c.needs_grad(i) && leaves[i].has_grad()) c.accumulate(i, leaves[i].grad());
        }
    }, Saves::all_inputs());

    std::vector<Var<T>> outputs{main};
    for (std::size_t i = 1; i < n_out; ++i) {
        outputs.push_back(tape.record("checkpoint_output", std::move(values[i]), {main}, [later, i](BackwardContext<T>& c) {
            (*later)[i] = c.output_grad();
            c.input_grad(0);  // the main node's backward must run even when only this output is used
        }, Saves::nothing()));
    }
    return outputs;
}

template std::vector<Var<float>> checkpoint(const CheckpointFn<float>&, const std::vector<Var<float>>&,
                                            const std::vector<Generator*>&);
template std::vector<Var<double>> checkpoint(const CheckpointFn<double>&, const std::vector<Var<double>>&,
                                             const std::vector<Generator*>&);

}  // namespace xgrad
