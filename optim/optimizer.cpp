#include "optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "../tensor/threads.hpp"
#include "parse.hpp"

namespace xgrad::optim {

template <class T>
Optimizer<T>::Optimizer(std::string name, std::vector<ParamGroup<T>> groups, double lr, double weight_decay,
                        std::vector<std::string> buffers, MomentumKind kind, double momentum)
    : name_(std::move(name)), momentum_kind_(kind), buffer_names_(std::move(buffers)) {
    if (groups.empty()) throw std::invalid_argument(fmt::format("{}: no parameter groups (torch: an empty parameter list)", name_));
    // Two handles to one storage would be updated twice per step, with two sets of state.
    std::unordered_map<const void*, std::size_t> index_of;
    for (std::size_t g = 0; g < groups.size(); ++g) {
        const GroupRates rates{groups[g].lr().value_or(lr), groups[g].weight_decay().value_or(weight_decay), momentum};
        check_rate("learning rate", g, rates.lr);
        check_rate("weight_decay", g, rates.weight_decay);
        groups_.push_back({rates, params_.size(), params_.size() + groups[g].params().size()});
        for (const Parameter<T>& p : groups[g].params()) {
            const std::size_t i = params_.size();
            if (!p.defined()) throw std::invalid_argument(fmt::format("{}: parameter {} (group {}) is undefined", name_, i, g));
            const auto [seen, inserted] = index_of.emplace(p.id(), i);
            if (!inserted) {
                const std::size_t first = seen->second;  // a copy: clang before 16 cannot capture a structured binding
                const auto first_group = static_cast<std::size_t>(
                    std::find_if(groups_.begin(), groups_.end(), [&](const Group& e) { return first < e.end; }) - groups_.begin());
                throw std::invalid_argument(fmt::format("{}: parameters {} and {} are the same parameter{}", name_, first, i,
                                                        groups.size() > 1 ? fmt::format(" (in groups {} and {})", first_group, g) : ""));
            }
            params_.push_back(p);
        }
    }
    // An empty group is allowed, as torch allows one (a model without biases split into weights and
    // biases); an optimizer with nothing at all to update is a mistake.
    if (params_.empty()) {
        throw std::invalid_argument(fmt::format("{}: no parameters in any of its {} group{} (torch: optimizer got an empty parameter list)",
                                                name_, groups.size(), groups.size() == 1 ? "" : "s"));
    }
    for (const Parameter<T>& p : params_) shapes_.push_back(p.shape());
    buffers_.resize(buffer_names_.size());  // allocated when first used (allocate_used_buffers)
    fresh_.assign(buffer_names_.size(), false);
}

template <class T>
bool Optimizer<T>::any_momentum() const {
    return momentum_kind_ != MomentumKind::none &&
           std::any_of(groups_.begin(), groups_.end(), [](const Group& g) { return g.momentum > 0; });
}

template <class T>
void Optimizer<T>::allocate_used_buffers() {
    for (std::size_t b = 0; b < buffers_.size(); ++b) {
        fresh_[b] = buffers_[b].empty() && uses_buffer(b);
        for (std::size_t i = 0; fresh_[b] && i < shapes_.size(); ++i) {
            Tensor<T> filled = Tensor<T>::from_shape(shapes_[i]);
            filled.fill(initial_value(b));
            buffers_[b].push_back(std::move(filled));
        }
    }
}

template <class T>
T* Optimizer<T>::buffer(std::size_t b, std::size_t i) {
    return buffers_[b].empty() ? nullptr : buffers_[b][i].data();
}

template <class T>
void Optimizer<T>::check_rate(const char* what, std::size_t group, double value) const {
    if (!(value >= 0) || !std::isfinite(value)) {
        throw std::invalid_argument(fmt::format("{}: {} {} of group {} is invalid", name_, what, value, group));
    }
}

template <class T>
const typename Optimizer<T>::Group& Optimizer<T>::group_at(std::size_t group, const char* who) const {
    if (group >= groups_.size()) {
        throw std::out_of_range(fmt::format("{}.{}: group {} of {}", name_, who, group, groups_.size()));
    }
    return groups_[group];
}

template <class T>
std::size_t Optimizer<T>::only_group(const char* who) const {
    if (groups_.size() != 1) {
        throw std::logic_error(fmt::format("{}.{}: the optimizer has {} parameter groups; name one ({}(group, ...))", name_,
                                           who, groups_.size(), who));
    }
    return 0;
}

template <class T>
std::span<const Parameter<T>> Optimizer<T>::group_parameters(std::size_t group) const {
    const Group& g = group_at(group, "group_parameters");
    return std::span<const Parameter<T>>(params_).subspan(g.begin, g.end - g.begin);
}

template <class T>
void Optimizer<T>::set_lr(std::size_t group, double lr) {
    group_at(group, "set_lr");
    check_rate("learning rate", group, lr);
    groups_[group].lr = lr;
}

template <class T>
void Optimizer<T>::check_momentum(std::size_t group, double value) const {
    if (momentum_kind_ == MomentumKind::none) throw std::logic_error(fmt::format("{}: has no momentum", name_));
    const bool beta1 = momentum_kind_ == MomentumKind::beta1;
    if (!(value >= 0) || !std::isfinite(value) || (beta1 && !(value < 1))) {
        throw std::invalid_argument(fmt::format("{}: {} {} of group {} is invalid (need {})", name_, beta1 ? "beta1" : "momentum",
                                                value, group, beta1 ? "0 <= beta1 < 1" : "a finite momentum >= 0"));
    }
}

template <class T>
double Optimizer<T>::momentum(std::size_t group) const {
    const Group& g = group_at(group, "momentum");
    if (momentum_kind_ == MomentumKind::none) throw std::logic_error(fmt::format("{}: has no momentum", name_));
    return g.momentum;
}

template <class T>
void Optimizer<T>::set_momentum(std::size_t group, double momentum) {
    group_at(group, "set_momentum");
    check_momentum(group, momentum);
    groups_[group].momentum = momentum;
}

template <class T>
void Optimizer<T>::set_weight_decay(std::size_t group, double weight_decay) {
    group_at(group, "set_weight_decay");
    check_rate("weight_decay", group, weight_decay);
    groups_[group].weight_decay = weight_decay;
}

template <class T>
void Optimizer<T>::check_shapes() const {
    for (std::size_t i = 0; i < params_.size(); ++i) {
        // The update rules walk value, gradient and state with one index: all three must agree.
        const Tensor<T>& v = params_[i].value();
        const Tensor<T>& g = params_[i].grad();
        const Shape& state = shapes_[i];
        if (g.shape() == v.shape() && std::equal(v.shape().begin(), v.shape().end(), state.begin(), state.end())) continue;
        throw ShapeError(fmt::format("{}.step: parameter {} has value {}, gradient {} and optimizer state {}; they "
                                     "must agree (was the parameter resized after the optimizer was built?)",
                                     name_, i, shape_str(shape_of(v)), shape_str(shape_of(g)), shape_str(state)));
    }
}

template <class T>
void Optimizer<T>::step() {
    check_shapes();  // before any parameter changes: a refused step leaves every parameter as it was
    if (steps_ >= max_steps) throw std::overflow_error(fmt::format("{}.step: step count {} is at its limit", name_, steps_));
    ++steps_;
    allocate_used_buffers();
    for (const Group& group : groups_) {
        for (std::size_t i = group.begin; i < group.end; ++i) {
            Parameter<T>& p = params_[i];
            update(i, p.value().data(), p.grad().data(), p.value().size(), steps_, group);
        }
    }
    govern_threads();  // a step is the unit whose time says whether the threads help
}

template <class T>
void Optimizer<T>::zero_grad() {
    for (auto& p : params_) p.zero_grad();
}

template <class T>
TensorFile<T> Optimizer<T>::state_dict() const {
    TensorFile<T> out;
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        for (std::size_t i = 0; i < buffers_[b].size(); ++i) out.tensors[fmt::format("{}.{}", buffer_names_[b], i)] = buffers_[b][i];
    }
    out.metadata["optimizer"] = name_;
    out.metadata["step"] = std::to_string(steps_);
    out.metadata["param_groups"] = std::to_string(groups_.size());
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        out.metadata[fmt::format("params.{}", g)] = std::to_string(groups_[g].end - groups_[g].begin);
        out.metadata[fmt::format("lr.{}", g)] = fmt::format("{:a}", groups_[g].lr);  // hexadecimal: the exact double
        out.metadata[fmt::format("weight_decay.{}", g)] = fmt::format("{:a}", groups_[g].weight_decay);
        if (momentum_kind_ != MomentumKind::none) out.metadata[fmt::format("momentum.{}", g)] = fmt::format("{:a}", groups_[g].momentum);
    }
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
    auto integer = [&](const std::string& key, std::int64_t most) {
        const std::string text = meta(key);
        const std::optional<std::int64_t> value = whole_integer(text);
        if (!value || *value < 0 || *value > most) {
            throw std::invalid_argument(fmt::format("{}.load_state_dict: '{}' = '{}' is malformed or outside [0, {}]", name_,
                                                    key, text, most));
        }
        return *value;
    };
    auto rate = [&](const std::string& key, std::size_t group) {
        const std::string text = meta(key);
        const std::optional<double> value = whole_double(text);
        if (!value || !(*value >= 0) || !std::isfinite(*value)) {
            throw std::invalid_argument(fmt::format("{}.load_state_dict: '{}' = '{}' of group {} is malformed, negative or "
                                                    "not finite", name_, key, text, group));
        }
        return *value;
    };
    const std::int64_t steps = integer("step", max_steps);
    std::vector<GroupRates> rates;
    if (!state.metadata.contains("param_groups") && state.metadata.contains("lr")) {  // written before groups: one group
        if (groups_.size() != 1) {
            throw std::invalid_argument(fmt::format("{}.load_state_dict: the state has one parameter group, the optimizer {}",
                                                    name_, groups_.size()));
        }
        rates.push_back({rate("lr", 0), groups_[0].weight_decay, groups_[0].momentum});
    } else {
        const auto count = static_cast<std::size_t>(integer("param_groups", max_steps));
        if (count != groups_.size()) {
            throw std::invalid_argument(fmt::format("{}.load_state_dict: the state has {} parameter groups, the optimizer {}",
                                                    name_, count, groups_.size()));
        }
        for (std::size_t g = 0; g < count; ++g) {
            const auto size = static_cast<std::size_t>(integer(fmt::format("params.{}", g), static_cast<std::int64_t>(params_.size())));
            if (size != groups_[g].end - groups_[g].begin) {
                throw std::invalid_argument(fmt::format("{}.load_state_dict: group {} has {} parameters in the state, {} here",
                                                        name_, g, size, groups_[g].end - groups_[g].begin));
            }
            // Files written before momentum was a group's setting keep the optimizer's.
            const std::string momentum_key = fmt::format("momentum.{}", g);
            const bool saved = momentum_kind_ != MomentumKind::none && state.metadata.contains(momentum_key);
            const double momentum = saved ? rate(momentum_key, g) : groups_[g].momentum;
            if (saved) check_momentum(g, momentum);
            rates.push_back({rate(fmt::format("lr.{}", g), g), rate(fmt::format("weight_decay.{}", g), g), momentum});
        }
    }
    // Each buffer is there for every parameter or not at all: an optimizer allocates a buffer when
    // its options first use it (SGD's momentum_buffer once a momentum is set, Adam's max_exp_avg_sq
    // with amsgrad), and saves only those it has.
    std::vector<bool> present(buffer_names_.size());
    std::size_t expected = 0;
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        present[b] = std::any_of(state.tensors.begin(), state.tensors.end(), [&](const auto& entry) {
            return entry.first.starts_with(buffer_names_[b] + ".");
        });
        expected += present[b] ? params_.size() : 0;
    }
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        for (std::size_t i = 0; present[b] && i < params_.size(); ++i) {
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
    if (state.tensors.size() != expected) {
        throw std::invalid_argument(fmt::format("{}.load_state_dict: {} tensors, expected {} (the buffers {} for each of {} parameters)",
                                                name_, state.tensors.size(), expected, fmt::join(buffer_names_, ", "), params_.size()));
    }
    // A buffer the options use must be there once steps were taken: its absence means state from
    // other options (Adam without amsgrad loaded into one with it), which would start over. Not so
    // for a buffer that follows the momentum, which a run may have set after its last step.
    std::vector<GroupRates> before;
    for (const Group& group : groups_) before.push_back(group);
    for (std::size_t g = 0; g < groups_.size(); ++g) static_cast<GroupRates&>(groups_[g]) = rates[g];
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        if (!present[b] && steps > 0 && uses_buffer(b) && !follows_momentum(b)) {
            for (std::size_t g = 0; g < groups_.size(); ++g) static_cast<GroupRates&>(groups_[g]) = before[g];
            throw std::invalid_argument(fmt::format("{}.load_state_dict: the state has no '{}', which this optimizer's options use "
                                                    "(saved with other options?)", name_, buffer_names_[b]));
        }
    }
    for (std::size_t b = 0; b < buffer_names_.size(); ++b) {
        buffers_[b].clear();
        for (std::size_t i = 0; present[b] && i < params_.size(); ++i) {
            buffers_[b].push_back(state.tensors.at(fmt::format("{}.{}", buffer_names_[b], i)));
        }
        fresh_[b] = false;
    }
    steps_ = steps;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace xgrad::optim
