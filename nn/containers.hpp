/// @file
/// Containers of modules with PyTorch's names: children are named by position, so a state dict reads
/// "0.weight", "2.bias" (Sequential) or "layers.1.weight" (a ModuleList registered as "layers").
///
/// @code
///   auto mlp = std::make_shared<xgrad::nn::Sequential<float>>();
///   mlp->push_back(std::make_shared<xgrad::nn::Linear<float>>(4, 8));
///   mlp->push_back([](const xgrad::Var<float>& x) { return xgrad::relu(x); });  // "1": no parameters
///   mlp->push_back(std::make_shared<xgrad::nn::Linear<float>>(8, 2));
///   auto y = mlp->forward(x);        // named_parameters(): 0.weight, 0.bias, 2.weight, 2.bias
/// @endcode
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../autograd/graph.hpp"
#include "module.hpp"

namespace xgrad::nn {

/// Modules in order, each a child named by its position. Indexing a list does not run anything:
/// the owner decides how its modules are used.
template <class T>
class ModuleList : public Module<T> {
  public:
    /// An empty list.
    ModuleList() : Module<T>("ModuleList") {}
    /// Appends `module` as child "<size()>", owned by the list, and returns it. Throws
    /// std::invalid_argument for a null module.
    template <class M>
    std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
        auto held = this->register_module(std::to_string(modules_.size()), std::move(module));
        modules_.push_back(held);
        // What a Sequential runs: the module's forward(const Var&), where it has one.
        if constexpr (requires(const Var<T>& x) { { held->forward(x) } -> std::convertible_to<Var<T>>; }) {
            forwards_.push_back([held](const Var<T>& x) { return held->forward(x); });
        } else {
            forwards_.push_back(nullptr);
        }
        return held;
    }
    /// Number of modules.
    std::size_t size() const { return modules_.size(); }
    /// The i-th module, as a Module; std::out_of_range past the end.
    Module<T>& operator[](std::size_t i) const { return *modules_[checked(i)]; }
    /// The i-th module as its own type; throws std::invalid_argument if it is another one.
    /// (std::out_of_range past the end.)
    template <class M>
    M& at(std::size_t i) const {
        auto* m = dynamic_cast<M*>(modules_[checked(i)].get());
        if (!m) {
            throw std::invalid_argument(this->type_name() + ": module " + std::to_string(i) + " is a " + modules_[i]->type_name());
        }
        return *m;
    }

  protected:
    /// For a derived container with a type name of its own ("Sequential").
    explicit ModuleList(std::string type_name) : Module<T>(std::move(type_name)) {}
    /// The i-th module's forward(const Var&), or an empty function for a module without one.
    const std::function<Var<T>(const Var<T>&)>& forward_of(std::size_t i) const { return forwards_[checked(i)]; }

  private:
    std::size_t checked(std::size_t i) const {
        if (i >= modules_.size()) {
            throw std::out_of_range(this->type_name() + ": index " + std::to_string(i) + " is out of range for " +
                                    std::to_string(modules_.size()) + " modules");
        }
        return i;
    }
    std::vector<std::shared_ptr<Module<T>>> modules_;
    std::vector<std::function<Var<T>(const Var<T>&)>> forwards_;
};

/// A function of no parameters as a module, so that it takes its position in a Sequential as
/// torch.nn.ReLU does.
template <class T>
class Functional : public Module<T> {
  public:
    /// Wraps `f`; an empty function throws std::invalid_argument.
    explicit Functional(std::function<Var<T>(const Var<T>&)> f) : Module<T>("Functional"), f_(std::move(f)) {
        if (!f_) throw std::invalid_argument("Functional: no function given");
    }
    /// f(input).
    Var<T> forward(const Var<T>& input) const { return f_(input); }

  private:
    std::function<Var<T>(const Var<T>&)> f_;
};

/// Modules applied in order, each one's output the next one's input: a ModuleList that runs. Any
/// module with a `forward(const Var<T>&)` goes in, and so does a plain function.
template <class T>
class Sequential : public ModuleList<T> {
  public:
    /// An empty sequence: forward returns its input.
    Sequential() : ModuleList<T>("Sequential") {}
    using ModuleList<T>::push_back;
    /// Appends a function of no parameters (a Functional), which takes a position and a name like any module.
    void push_back(std::function<Var<T>(const Var<T>&)> f) { push_back(std::make_shared<Functional<T>>(std::move(f))); }
    /// Runs the modules in order on `input`.
    /// Throws std::invalid_argument naming a module without forward(const Var&); a module's own
    /// ShapeError or std::invalid_argument (an input that does not fit it) comes out as the same
    /// type, prefixed with the module's position and type: "Sequential: module 2 (Linear): ...".
    Var<T> forward(const Var<T>& input) const {
        Var<T> x = input;
        for (std::size_t i = 0; i < this->size(); ++i) {
            const auto& step = this->forward_of(i);
            if (!step) throw std::invalid_argument(where(i) + " has no forward(const Var&)");
            try {
                x = step(x);
            } catch (const ShapeError& e) {
                throw ShapeError(where(i) + ": " + e.what());
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument(where(i) + ": " + e.what());
            }
        }
        return x;
    }

  private:
    std::string where(std::size_t i) const { return "Sequential: module " + std::to_string(i) + " (" + (*this)[i].type_name() + ")"; }
};

}  // namespace xgrad::nn
