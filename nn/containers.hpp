// Containers of modules with PyTorch's names: children are named by position, so a state dict reads
// "0.weight", "2.bias" (Sequential) or "layers.1.weight" (a ModuleList registered as "layers").
//
//   auto mlp = std::make_shared<xgrad::nn::Sequential<float>>();
//   mlp->push_back(std::make_shared<xgrad::nn::Linear<float>>(4, 8));
//   mlp->push_back([](const xgrad::Var<float>& x) { return xgrad::relu(x); });  // "1": no parameters
//   mlp->push_back(std::make_shared<xgrad::nn::Linear<float>>(8, 2));
//   auto y = mlp->forward(x);        // named_parameters(): 0.weight, 0.bias, 2.weight, 2.bias
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../autograd/graph.hpp"
#include "module.hpp"

namespace xgrad::nn {

// Modules in order, each a child named by its position. Indexing a list does not run anything:
// the owner decides how its modules are used.
template <class T>
class ModuleList : public Module<T> {
  public:
    ModuleList() : Module<T>("ModuleList") {}
    template <class M>
    std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
        auto held = this->register_module(std::to_string(modules_.size()), std::move(module));
        modules_.push_back(held);
        return held;
    }
    std::size_t size() const { return modules_.size(); }
    Module<T>& operator[](std::size_t i) const { return *modules_.at(i); }
    // The i-th module as its own type; throws std::invalid_argument if it is another one.
    template <class M>
    M& at(std::size_t i) const {
        auto* m = dynamic_cast<M*>(modules_.at(i).get());
        if (!m) {
            throw std::invalid_argument(this->type_name() + ": module " + std::to_string(i) + " is a " + modules_[i]->type_name());
        }
        return *m;
    }

  private:
  protected:
    explicit ModuleList(std::string type_name) : Module<T>(std::move(type_name)) {}

  private:
    std::vector<std::shared_ptr<Module<T>>> modules_;
};

// A function of no parameters as a module, so that it takes its position in a Sequential as
// torch.nn.ReLU does.
template <class T>
class Functional : public Module<T> {
  public:
    explicit Functional(std::function<Var<T>(const Var<T>&)> f) : Module<T>("Functional"), f_(std::move(f)) {
        if (!f_) throw std::invalid_argument("Functional: no function given");
    }
    Var<T> forward(const Var<T>& input) const { return f_(input); }

  private:
    std::function<Var<T>(const Var<T>&)> f_;
};

// Modules applied in order, each one's output the next one's input: a ModuleList that runs. Any
// module with a `forward(const Var<T>&)` goes in, and so does a plain function.
template <class T>
class Sequential : public ModuleList<T> {
  public:
    Sequential() : ModuleList<T>("Sequential") {}
    template <class M>
    std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
        auto held = ModuleList<T>::push_back(std::move(module));
        steps_.push_back([held](const Var<T>& x) { return held->forward(x); });
        return held;
    }
    void push_back(std::function<Var<T>(const Var<T>&)> f) { push_back(std::make_shared<Functional<T>>(std::move(f))); }
    Var<T> forward(const Var<T>& input) const {
        Var<T> x = input;
        for (const auto& step : steps_) x = step(x);
        return x;
    }

  private:
    std::vector<std::function<Var<T>(const Var<T>&)>> steps_;
};

}  // namespace xgrad::nn
