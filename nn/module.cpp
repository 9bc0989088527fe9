#include "module.hpp"

#include <fmt/format.h>

#include "../tensor/safetensors.hpp"

namespace xgrad::nn {

template <class T>
std::vector<std::pair<std::string, Parameter<T>>> Module<T>::named_parameters() const {
    std::vector<std::pair<std::string, Parameter<T>>> out;
    // An explicit stack (children pushed in reverse) walks the tree depth-first without recursion.
    std::vector<std::pair<std::string, const Module<T>*>> stack = {{"", this}};
    while (!stack.empty()) {
        auto [prefix, m] = stack.back();
        stack.pop_back();
        for (const auto& [name, p] : m->parameters_) out.emplace_back(prefix + name, p);
        for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it) {
            stack.emplace_back(prefix + it->first + ".", it->second);
        }
    }
    return out;
}

template <class T>
std::vector<Parameter<T>> Module<T>::parameters() const {
    std::vector<Parameter<T>> out;
    for (auto& [name, p] : named_parameters()) out.push_back(p);
    return out;
}

template <class T>
std::size_t Module<T>::parameter_count() const {
    std::size_t n = 0;
    for (const auto& p : parameters()) n += p.numel();
    return n;
}

template <class T>
void Module<T>::zero_grad() {
    for (auto& p : parameters()) p.zero_grad();
}

template <class T>
void Module<T>::train(bool on) {
    std::vector<Module<T>*> stack = {this};
    while (!stack.empty()) {
        Module<T>* m = stack.back();
        stack.pop_back();
        m->training_ = on;
        for (auto& [name, child] : m->children_) stack.push_back(child);
    }
}

template <class T>
StateDict<T> Module<T>::state_dict() const {
    StateDict<T> out;
    for (const auto& [name, p] : named_parameters()) out[name] = p.value();
    return out;
}

template <class T>
void Module<T>::load_state_dict(const StateDict<T>& state) {
    const auto named = named_parameters();
    for (const auto& [name, p] : named) {
        auto found = state.find(name);
        if (found == state.end()) {
            throw std::invalid_argument(fmt::format("{}.load_state_dict: missing parameter '{}' of shape {}",
                                                    type_name_, name, shape_str(p.shape())));
        }
        if (shape_of(found->second) != p.shape()) {
            throw ShapeError(fmt::format("{}.load_state_dict: parameter '{}' has shape {} in the state dict, expected {}",
                                         type_name_, name, shape_str(shape_of(found->second)), shape_str(p.shape())));
        }
        // Damaged weights would otherwise surface only as NaN outputs, far from their cause.
        if (const auto bad = first_non_finite(found->second)) {
            throw std::invalid_argument(fmt::format("{}.load_state_dict: parameter '{}' holds {} at flat index {}",
                                                    type_name_, name, found->second.data()[*bad], *bad));
        }
    }
    if (state.size() != named.size()) {
        std::set<std::string> known;
        for (const auto& entry : named) known.insert(entry.first);
        for (const auto& [name, value] : state) {
            if (known.count(name) == 0) {
                throw std::invalid_argument(fmt::format("{}.load_state_dict: unexpected parameter '{}' of shape {}",
                                                        type_name_, name, shape_str(shape_of(value))));
            }
        }
    }
    for (auto [name, p] : named) p.value() = state.at(name);
}

template <class T>
void Module<T>::save(const std::string& path) const {
    TensorFile<T> file;
    file.tensors = state_dict();
    save_safetensors(path, file);
}

template <class T>
void Module<T>::load(const std::string& path) {
    load_state_dict(load_safetensors<T>(path).tensors);
}

template <class T>
void Module<T>::claim_name(const std::string& name) {
    if (name.empty() || name.find('.') != std::string::npos) {
        throw std::invalid_argument(fmt::format("{}: '{}' is not a valid name (non-empty, no '.')", type_name_, name));
    }
    if (!names_.insert(name).second) {
        throw std::invalid_argument(fmt::format("{}: the name '{}' is already registered", type_name_, name));
    }
}

template <class T>
Parameter<T> Module<T>::register_parameter(const std::string& name, Tensor<T> value) {
    claim_name(name);
    parameters_.emplace_back(name, Parameter<T>(std::move(value)));
    return parameters_.back().second;
}

// Registering `child` makes a cycle when this module is `child` or lies inside it (child is then
// an ancestor): every walk over the tree (named_parameters, train) would go round for ever.
template <class T>
void Module<T>::register_module(const std::string& name, Module<T>& child) {
    const auto refuse = [&](const std::string& why) {
        throw std::invalid_argument(fmt::format("{}: register_module '{}': {} (a cycle)", type_name_, name, why));
    };
    if (&child == this) refuse(fmt::format("the module is this {} itself", type_name_));
    // A module may be shared by several parents: `seen` visits each once.
    std::set<const Module<T>*> seen = {&child};
    std::vector<const Module<T>*> stack = {&child};
    while (!stack.empty()) {
        const Module<T>* m = stack.back();
        stack.pop_back();
        for (const auto& entry : m->children_) {
            if (entry.second == this) refuse(fmt::format("that {} already contains this {}", child.type_name_, type_name_));
            if (seen.insert(entry.second).second) stack.push_back(entry.second);
        }
    }
    claim_name(name);
    children_.emplace_back(name, &child);
}

template class Module<float>;
template class Module<double>;

}  // namespace xgrad::nn
