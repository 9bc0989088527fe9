#include "optimizer.hpp"

#include <cmath>
#include <unordered_map>

#include <fmt/format.h>

namespace xgrad::optim {

template <class T>
Optimizer<T>::Optimizer(std::string name, std::vector<Parameter<T>> params, double lr, std::vector<std::string> buffers)
    : name_(std::move(name)), params_(std::move(params)), lr_(0), buffer_names_(std::move(buffers)) {
    set_lr(lr);
    // Two handles to one storage would be updated twice per step, with two sets of state.
    std::unordered_map<const void*, std::size_t> index_of;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!params_[i].defined()) throw std::invalid_argument(fmt::format("{}: parameter {} is undefined", name_, i));
        const auto [seen, inserted] = index_of.emplace(params_[i].id(), i);
        if (!inserted) {
            throw std::invalid_argument(fmt::format("{}: parameters {} and {} are the same parameter", name_, seen->second, i));
        }
    }
    buffers_.resize(buffer_names_.size());
    for (auto& per_param : buffers_) {
        for (const auto& p : params_) {
            Tensor<T> zeros = Tensor<T>::from_shape(p.value().shape());
            zeros.fill(T(0));
            per_param.push_back(std::move(zeros));
        }
    }
}

template <class T>
void Optimizer<T>::set_lr(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr)) throw std::invalid_argument(fmt::format("{}: learning rate {} is invalid", name_, lr));
    lr_ = lr;
}

template <class T>
void Optimizer<T>::fill_buffer(std::size_t b, T value) {
    for (auto& t : buffers_[b]) t.fill(value);
}

template <class T>
void Optimizer<T>::check_shapes() const {
    for (std::size_t i = 0; i < params_.size(); ++i) {
        // The update rules walk value, gradient and state with one index: all three must agree.
        const Tensor<T>& v = params_[i].value();
        const Tensor<T>& g = params_[i].grad();
        if (g.shape() == v.shape() && (buffers_.empty() || buffers_[0][i].shape() == v.shape())) continue;
        const Shape value = shape_of(v), state = buffers_.empty() ? value : shape_of(buffers_[0][i]);
        throw ShapeError(fmt::format("{}.step: parameter {} has value {}, gradient {} and optimizer state {}; they "
                                     "must agree (was the parameter resized after the optimizer was built?)",
                                     name_, i, shape_str(value), shape_str(shape_of(g)), shape_str(state)));
    }
}

template <class T>
void Optimizer<T>::step() {
    check_shapes();  // before any parameter changes: a refused step leaves every parameter as it was
    if (steps_ >= max_steps) throw std::overflow_error(fmt::format("{}.step: step count {} is at its limit", name_, steps_));
    ++steps_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        Parameter<T>& p = params_[i];
        update(i, p.value().data(), p.grad().data(), p.value().size(), steps_);
    }
}

template <class T>
void Optimizer<T>::zero_grad() {
    for (auto& p : params_) p.zero_grad();
}

template <class T>
TensorFile<T> Optimizer<T>::state_dict() const {
    TensorFile<T> out;
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        for (std::size_t i = 0; i < params_.size(); ++i) out.tensors[fmt::format("{}.{}", buffer_names_[b], i)] = buffers_[b][i];
    }
    out.metadata["optimizer"] = name_;
    out.metadata["step"] = std::to_string(steps_);
    out.metadata["lr"] = fmt::format("{:a}", lr_);  // hexadecimal: the exact double
    return out;
}

template <class T>
void Optimizer<T>::load_state_dict(const TensorFile<T>& state) {
    auto meta = [&](const std::string& key) {
        auto it = state.metadata.find(key);
        if (it == state.metadata.end()) throw std::invalid_argument(fmt::format("{}.load_state_dict: no '{}' entry", name_, key));
        return it->second;
    };
    if (meta("optimizer") != name_) {
        throw std::invalid_argument(
            fmt::format("{}.load_state_dict: the state belongs to optimizer {}", name_, meta("optimizer")));
    }
    std::int64_t steps = 0;
    double lr = 0;
    try {
        std::size_t used = 0;
        const std::string step_text = meta("step"), lr_text = meta("lr");
        steps = std::stoll(step_text, &used);
        if (used != step_text.size() || steps < 0 || steps > max_steps) throw std::invalid_argument("step");
        lr = std::stod(lr_text, &used);
        if (used != lr_text.size()) throw std::invalid_argument("lr");
    } catch (const std::logic_error&) {
        throw std::invalid_argument(fmt::format("{}.load_state_dict: step or lr is malformed or out of range (step in [0, {}])",
                                                name_, max_steps));
    }
    if (state.tensors.size() != buffer_names_.size() * params_.size()) {
        throw std::invalid_argument(fmt::format("{}.load_state_dict: {} tensors, expected {}", name_,
                                                state.tensors.size(), buffer_names_.size() * params_.size()));
    }
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const std::string key = fmt::format("{}.{}", buffer_names_[b], i);
            auto it = state.tensors.find(key);
            if (it == state.tensors.end()) throw std::invalid_argument(fmt::format("{}.load_state_dict: missing '{}'", name_, key));
            if (shape_of(it->second) != params_[i].shape()) {
                throw ShapeError(fmt::format("{}.load_state_dict: '{}' has shape {}, parameter {} has shape {}", name_, key,
                                             shape_str(shape_of(it->second)), i, shape_str(params_[i].shape())));
            }
            if (const auto bad = first_non_finite(it->second)) {  // it would poison every later update
                throw std::invalid_argument(fmt::format("{}.load_state_dict: '{}' holds {} at flat index {}", name_, key,
                                                        it->second.data()[*bad], *bad));
            }
        }
    }
    set_lr(lr);  // last of the checks (it refuses a negative or non-finite rate), first of the changes
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        for (std::size_t i = 0; i < params_.size(); ++i) buffers_[b][i] = state.tensors.at(fmt::format("{}.{}", buffer_names_[b], i));
    }
    steps_ = steps;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace xgrad::optim
