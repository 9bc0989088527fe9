// Optimizers over parameters, with PyTorch's update rules and defaults (torch.optim, 1.13):
//
//   xgrad::optim::Adam<float> opt(model.parameters(), xgrad::optim::AdamOptions(2e-3));
//   opt.zero_grad();  loss.backward();  opt.step();
//
// Parameter groups, as torch.optim's param_groups: each group may set its own learning rate and
// weight decay; what a group leaves unset comes from the options.
//
//   xgrad::optim::Adam<float> opt({encoder.parameters(),
//                                  xgrad::optim::ParamGroup<float>(head.parameters()).lr(1e-4).weight_decay(0)},
//                                 xgrad::optim::AdamOptions(2e-3));
//
// Each optimizer's state (moment buffers, step count, every group's lr and weight decay) saves to
// and loads from a TensorFile, so training resumes exactly from a checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../autograd/parameter.hpp"
#include "options.hpp"
#include "../tensor/safetensors.hpp"

namespace xgrad::optim {

// A parameter group's settings as the update rules read them.
struct GroupRates {
    double lr;
    double weight_decay;
};

// Parameters that share a learning rate and a weight decay. Implicit from a parameter list, so a
// list of lists is a list of groups.
template <class T>
class ParamGroup {
  public:
    ParamGroup(std::vector<Parameter<T>> params) : params_(std::move(params)) {}  // NOLINT(google-explicit-constructor)
    ParamGroup& lr(double value) {
        lr_ = value;
        return *this;
    }
    ParamGroup& weight_decay(double value) {
        weight_decay_ = value;
        return *this;
    }
    const std::vector<Parameter<T>>& params() const { return params_; }
    std::optional<double> lr() const { return lr_; }
    std::optional<double> weight_decay() const { return weight_decay_; }

  private:
    std::vector<Parameter<T>> params_;
    std::optional<double> lr_, weight_decay_;
};

template <class T>
class Optimizer {
  public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update of every parameter from its .grad(). Throws ShapeError naming the parameter if a
    // value, gradient and state shape disagree, before any parameter changes.
    void step();
    // Largest step count: 2^53, past which the bias corrections' step (a double) is no longer exact.
    static constexpr std::int64_t max_steps = std::int64_t{1} << 53;
    void zero_grad();
    std::int64_t steps_taken() const { return steps_; }
    const std::string& name() const { return name_; }
    // Every parameter, group after group; a parameter's index here names it in errors and state.
    const std::vector<Parameter<T>>& parameters() const { return params_; }

    std::size_t num_param_groups() const { return groups_.size(); }
    std::span<const Parameter<T>> group_parameters(std::size_t group) const;
    double lr(std::size_t group) const { return group_at(group, "lr").lr; }
    void set_lr(std::size_t group, double lr);
    double weight_decay(std::size_t group) const { return group_at(group, "weight_decay").weight_decay; }
    void set_weight_decay(std::size_t group, double weight_decay);
    // The learning rate of an optimizer with one group; with several, name the group (std::logic_error).
    double lr() const { return lr(only_group("lr")); }
    void set_lr(double lr) { set_lr(only_group("set_lr"), lr); }

    // Tensors "<buffer>.<parameter index>"; metadata "optimizer", "step", "param_groups" (the count)
    // and per group g "params.g" (its size), "lr.g" and "weight_decay.g".
    TensorFile<T> state_dict() const;
    // Refuses another optimizer's state, another grouping, missing or extra buffers, and wrong
    // shapes, naming them; changes nothing unless all of it fits. Also reads the single-group
    // files written before parameter groups (metadata "lr").
    void load_state_dict(const TensorFile<T>& state);

  protected:
    Optimizer(std::string name, std::vector<ParamGroup<T>> groups, double lr, double weight_decay,
              std::vector<std::string> buffers);
    // Updates parameter i (value p, gradient g, n entries) for step number `step` (1-based) with its group's rates.
    virtual void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) = 0;
    // Parameter i's buffer `b` (an index into the names given to the constructor).
    T* buffer(std::size_t b, std::size_t i) { return buffers_[b][i].data(); }
    void fill_buffer(std::size_t b, T value);

  private:
    struct Group : GroupRates {
        std::size_t begin, end;  // its parameters' range in params_
    };
    void check_shapes() const;
    const Group& group_at(std::size_t group, const char* who) const;
    std::size_t only_group(const char* who) const;
    void check_rate(const char* what, std::size_t group, double value) const;

    std::string name_;
    std::vector<Parameter<T>> params_;
    std::vector<Group> groups_;
    std::int64_t steps_ = 0;
    std::vector<std::string> buffer_names_;
    std::vector<std::vector<Tensor<T>>> buffers_;  // [buffer][parameter], zeros of the parameter's shape
};

struct SGDOptions {
    explicit SGDOptions(double lr) : lr_(lr) {}
    XGRAD_OPTION(double, lr) = 0.0;
    XGRAD_OPTION(double, momentum) = 0.0;
    XGRAD_OPTION(double, dampening) = 0.0;
    XGRAD_OPTION(double, weight_decay) = 0.0;
    XGRAD_OPTION(bool, nesterov) = false;
};

struct AdamOptions {
    explicit AdamOptions(double lr = 1e-3) : lr_(lr) {}
    XGRAD_OPTION(double, lr) = 1e-3;
    XGRAD_OPTION(double, beta1) = 0.9;
    XGRAD_OPTION(double, beta2) = 0.999;
    XGRAD_OPTION(double, eps) = 1e-8;
    XGRAD_OPTION(double, weight_decay) = 0.0;  // AdamW's default is 1e-2, set by AdamW
    XGRAD_OPTION(bool, amsgrad) = false;
};

struct AdagradOptions {
    explicit AdagradOptions(double lr = 1e-2) : lr_(lr) {}
    XGRAD_OPTION(double, lr) = 1e-2;
    XGRAD_OPTION(double, lr_decay) = 0.0;
    XGRAD_OPTION(double, weight_decay) = 0.0;
    XGRAD_OPTION(double, initial_accumulator_value) = 0.0;
    XGRAD_OPTION(double, eps) = 1e-10;
};

struct RMSpropOptions {
    explicit RMSpropOptions(double lr = 1e-2) : lr_(lr) {}
    XGRAD_OPTION(double, lr) = 1e-2;
    XGRAD_OPTION(double, alpha) = 0.99;
    XGRAD_OPTION(double, eps) = 1e-8;
    XGRAD_OPTION(double, weight_decay) = 0.0;
    XGRAD_OPTION(double, momentum) = 0.0;
    XGRAD_OPTION(bool, centered) = false;
};

// g = grad + wd p;  buf = g (first step) or μ buf + (1 - τ) g;  g = g + μ buf (nesterov) or buf;  p -= lr g
template <class T>
class SGD : public Optimizer<T> {
  public:
    SGD(std::vector<Parameter<T>> params, SGDOptions options);
    SGD(std::vector<ParamGroup<T>> groups, SGDOptions options);
    const SGDOptions& options() const { return options_; }

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    SGDOptions options_;
};

// m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)
// Adam adds wd p to g; AdamW (decoupled) multiplies p by 1 - lr wd first.
template <class T>
class Adam : public Optimizer<T> {
  public:
    Adam(std::vector<Parameter<T>> params, AdamOptions options = AdamOptions());
    Adam(std::vector<ParamGroup<T>> groups, AdamOptions options = AdamOptions());
    const AdamOptions& options() const { return options_; }

  protected:
    Adam(std::string name, std::vector<ParamGroup<T>> groups, AdamOptions options, bool decoupled);

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    AdamOptions options_;
    bool decoupled_;
};

template <class T>
class AdamW : public Adam<T> {
  public:
    // weight_decay defaults to 1e-2 here, as torch.optim.AdamW.
    AdamW(std::vector<Parameter<T>> params, AdamOptions options = AdamOptions().weight_decay(1e-2));
    AdamW(std::vector<ParamGroup<T>> groups, AdamOptions options = AdamOptions().weight_decay(1e-2));
};

// g += wd p;  clr = lr / (1 + (t-1) lr_decay);  s += g²;  p -= clr g / (sqrt(s) + ε)
template <class T>
class Adagrad : public Optimizer<T> {
  public:
    Adagrad(std::vector<Parameter<T>> params, AdagradOptions options = AdagradOptions());
    Adagrad(std::vector<ParamGroup<T>> groups, AdagradOptions options = AdagradOptions());

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    AdagradOptions options_;
};

// g += wd p;  v = α v + (1-α) g²;  avg = sqrt(v - ḡ²) (centered, ḡ = α ḡ + (1-α) g) or sqrt(v), + ε;
// buf = μ buf + g/avg, p -= lr buf (momentum) or p -= lr g/avg
template <class T>
class RMSprop : public Optimizer<T> {
  public:
    RMSprop(std::vector<Parameter<T>> params, RMSpropOptions options = RMSpropOptions());
    RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions options = RMSpropOptions());

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    RMSpropOptions options_;
};

}  // namespace xgrad::optim
