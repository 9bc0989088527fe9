/// @file
/// Optimizers over parameters, with PyTorch's update rules and defaults (torch.optim, 1.13):
///
/// @code
///   xgrad::optim::Adam<float> opt(model.parameters(), xgrad::optim::AdamOptions(2e-3));
///   opt.zero_grad();  loss.backward();  opt.step();
/// @endcode
///
/// Parameter groups, as torch.optim's param_groups: each group may set its own learning rate and
/// weight decay; what a group leaves unset comes from the options.
///
/// @code
///   xgrad::optim::Adam<float> opt({encoder.parameters(),
///                                  xgrad::optim::ParamGroup<float>(head.parameters()).lr(1e-4).weight_decay(0)},
///                                 xgrad::optim::AdamOptions(2e-3));
/// @endcode
///
/// Each optimizer's state (moment buffers, step count, every group's lr and weight decay) saves to
/// and loads from a TensorFile, so training resumes exactly from a checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../autograd/parameter.hpp"
#include "../tensor/options.hpp"
#include "../tensor/safetensors.hpp"

namespace xgrad::optim {

/// A parameter group's settings as the update rules read them.
struct GroupRates {
    /// The group's learning rate.
    double lr;
    /// The group's weight decay (L2 penalty, or AdamW's decoupled decay).
    double weight_decay;
    /// The group's momentum: SGD's and RMSprop's μ, Adam's β1 (what OneCycleLR cycles); 0 for Adagrad.
    double momentum = 0;
};

/// What an optimizer's momentum(group) is: none (Adagrad), a factor μ >= 0 (SGD, RMSprop) or
/// Adam's β1 in [0, 1).
enum class MomentumKind { none, factor, beta1 };

/// Parameters that share a learning rate and a weight decay. Implicit from a parameter list, so a
/// list of lists is a list of groups.
template <class T>
class ParamGroup {
  public:
    /// A group of these parameters with the optimizer's own rates until lr() or weight_decay() sets them.
    ParamGroup(std::vector<Parameter<T>> params) : params_(std::move(params)) {}  // NOLINT(google-explicit-constructor)
    /// The group's parameters, in order.
    const std::vector<Parameter<T>>& params() const { return params_; }
    /// The group's own learning rate instead of the options'; empty: the options' applies.
    XGRAD_OPTION(std::optional<double>, lr);
    /// The group's own weight decay instead of the options'; empty: the options' applies.
    XGRAD_OPTION(std::optional<double>, weight_decay);

  private:
    std::vector<Parameter<T>> params_;
};

/// The base of the optimizers: parameter groups with their rates, the step count, per-parameter
/// state buffers, and the state dict. Derived classes supply the update rule.
template <class T>
class Optimizer {
  public:
    virtual ~Optimizer() = default;
    /// Not copyable: it holds per-parameter state for one training run.
    ///@{
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;
    ///@}

    /// One update of every parameter from its .grad(). Throws ShapeError naming the parameter if a
    /// value, gradient and state shape disagree, before any parameter changes.
    /// std::overflow_error once max_steps steps were taken.
    void step();
    /// Largest step count: 2^53, past which the bias corrections' step (a double) is no longer exact.
    static constexpr std::int64_t max_steps = std::int64_t{1} << 53;
    /// Zeros every parameter's gradient (Parameter::zero_grad), before the next backward.
    void zero_grad();
    /// Steps taken so far, restored by load_state_dict.
    std::int64_t steps_taken() const { return steps_; }
    /// "SGD", "Adam", "AdamW", "Adagrad" or "RMSprop": in errors and the saved state.
    const std::string& name() const { return name_; }
    /// Every parameter, group after group; a parameter's index here names it in errors and state.
    const std::vector<Parameter<T>>& parameters() const { return params_; }

    /// Number of parameter groups (1 for an optimizer built from one parameter list).
    std::size_t num_param_groups() const { return groups_.size(); }
    /// The parameters of group `group`; std::out_of_range for a group that does not exist.
    std::span<const Parameter<T>> group_parameters(std::size_t group) const;
    /// The learning rate of group `group` (std::out_of_range for none such).
    double lr(std::size_t group) const { return group_at(group, "lr").lr; }
    /// Sets group `group`'s learning rate (what schedulers do); it must be finite and >= 0 (std::invalid_argument).
    void set_lr(std::size_t group, double lr);
    /// The weight decay of group `group` (std::out_of_range for none such).
    double weight_decay(std::size_t group) const { return group_at(group, "weight_decay").weight_decay; }
    /// Sets group `group`'s weight decay; it must be finite and >= 0 (std::invalid_argument).
    void set_weight_decay(std::size_t group, double weight_decay);
    /// What momentum() is for this optimizer.
    MomentumKind momentum_kind() const { return momentum_kind_; }
    /// The momentum of group `group` (SGD's and RMSprop's μ, Adam's β1); std::logic_error for Adagrad,
    /// which has none, std::out_of_range for a group that does not exist.
    double momentum(std::size_t group) const;
    /// Whether any group's momentum is above 0 (false for Adagrad, which has none).
    bool any_momentum() const;
    /// Sets group `group`'s momentum (what OneCycleLR does): μ finite and >= 0, β1 in [0, 1)
    /// (std::invalid_argument); std::logic_error for Adagrad.
    void set_momentum(std::size_t group, double momentum);
    /// The learning rate of an optimizer with one group; with several, name the group (std::logic_error).
    double lr() const { return lr(only_group("lr")); }
    /// Sets the learning rate of an optimizer with one group; with several, name the group (std::logic_error).
    void set_lr(double lr) { set_lr(only_group("set_lr"), lr); }

    /// The optimizer's whole state, to save with save_safetensors beside the model.
    /// Tensors "<buffer>.<parameter index>"; metadata "optimizer", "step", "param_groups" (the count)
    /// and per group g "params.g" (its size), "lr.g", "weight_decay.g" and, but for Adagrad, "momentum.g"
    /// (files without it keep the optimizer's momentum).
    TensorFile<T> state_dict() const;
    /// Refuses another optimizer's state, another grouping, missing or extra buffers, and wrong
    /// shapes, naming them; changes nothing unless all of it fits. Also reads the single-group
    /// files written before parameter groups (metadata "lr").
    void load_state_dict(const TensorFile<T>& state);

  protected:
    /// Checks the groups and rates (std::invalid_argument for no groups, no parameter in any group, an undefined or repeated
    /// parameter, or a negative or non-finite rate). `buffers` names the per-parameter state; each is
    /// allocated, zero, at the first step whose options use it (uses_buffer). `lr` and `weight_decay` apply to groups that set none; `momentum` (of
    /// the given kind) to every group.
    Optimizer(std::string name, std::vector<ParamGroup<T>> groups, double lr, double weight_decay,
              std::vector<std::string> buffers, MomentumKind kind = MomentumKind::none, double momentum = 0);
    /// Updates parameter i (value p, gradient g, n entries) for step number `step` (1-based) with its group's rates.
    virtual void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) = 0;
    /// Whether the options as they are now use buffer `b` (an index into the names given to the
    /// constructor): a buffer no option uses is never allocated. Every buffer, unless overridden.
    virtual bool uses_buffer(std::size_t /*b*/) const { return true; }
    /// Whether buffer `b` depends on the groups' momentum, which can change between steps: a saved
    /// state may then lack it even after steps (SGD's and RMSprop's momentum_buffer).
    virtual bool follows_momentum(std::size_t /*b*/) const { return false; }
    /// What buffer `b` starts from when it is allocated: 0 unless overridden (Adagrad's initial accumulator).
    virtual T initial_value(std::size_t /*b*/) const { return T(0); }
    /// Parameter i's buffer `b`, or null while the options have not used it.
    T* buffer(std::size_t b, std::size_t i);
    /// Whether buffer `b` was allocated, from initial_value, at this step (SGD starts its momentum from the gradient then, as torch).
    bool buffer_fresh(std::size_t b) const { return fresh_[b]; }


  private:
    struct Group : GroupRates {
        std::size_t begin, end;  // its parameters' range in params_
    };
    void check_shapes() const;
    const Group& group_at(std::size_t group, const char* who) const;
    std::size_t only_group(const char* who) const;
    void check_rate(const char* what, std::size_t group, double value) const;
    void check_momentum(std::size_t group, double value) const;
    void allocate_used_buffers();  // at a step: the buffers the options now use, from initial_value, unless allocated

    std::string name_;
    std::vector<Parameter<T>> params_;
    std::vector<Group> groups_;
    std::int64_t steps_ = 0;
    MomentumKind momentum_kind_;
    std::vector<std::string> buffer_names_;
    std::vector<std::vector<Tensor<T>>> buffers_;  // [buffer][parameter] of the parameter's shape; empty until used
    std::vector<bool> fresh_;                      // [buffer]: allocated at this step
    std::vector<Shape> shapes_;                    // each parameter's shape when the optimizer was built, its state's
};

/// SGD's options, torch.optim.SGD's defaults; chain them: `SGDOptions(0.1).momentum(0.9)`.
/// Each option is a setter and a getter (XGRAD_OPTION).
struct SGDOptions {
    /// The learning rate has no default, as in torch.optim.SGD.
    explicit SGDOptions(double lr) : lr_(lr) {}
    /// Learning rate, for the groups that set none.
    XGRAD_OPTION(double, lr) = 0.0;
    /// μ, the momentum factor; 0 keeps no momentum buffer.
    XGRAD_OPTION(double, momentum) = 0.0;
    /// τ, in [0, 1]: the share of each gradient left out of the momentum buffer.
    XGRAD_OPTION(double, dampening) = 0.0;
    /// L2 penalty: wd p is added to the gradient, for the groups that set none.
    XGRAD_OPTION(double, weight_decay) = 0.0;
    /// Nesterov momentum; needs momentum > 0 and dampening 0 (std::invalid_argument).
    XGRAD_OPTION(bool, nesterov) = false;
};

/// Adam's and AdamW's options, torch.optim.Adam's defaults; chain them: `AdamOptions(2e-3).beta2(0.99)`.
/// Each option is a setter and a getter (XGRAD_OPTION).
struct AdamOptions {
    /// The learning rate, 1e-3 by default.
    explicit AdamOptions(double lr = 1e-3) : lr_(lr) {}
    /// Learning rate, for the groups that set none.
    XGRAD_OPTION(double, lr) = 1e-3;
    /// β1, in [0, 1): decay of the running mean of the gradients.
    XGRAD_OPTION(double, beta1) = 0.9;
    /// β2, in [0, 1): decay of the running mean of the squared gradients.
    XGRAD_OPTION(double, beta2) = 0.999;
    /// ε >= 0, added to the denominator.
    XGRAD_OPTION(double, eps) = 1e-8;
    XGRAD_OPTION(double, weight_decay) = 0.0;  ///< L2 penalty (Adam) or decoupled decay (AdamW); AdamW's default is 1e-2, set by AdamW
    /// AMSGrad: divide by the largest second moment seen so far instead of the current one.
    XGRAD_OPTION(bool, amsgrad) = false;
};

/// Adagrad's options, torch.optim.Adagrad's defaults. Each option is a setter and a getter (XGRAD_OPTION).
struct AdagradOptions {
    /// The learning rate, 1e-2 by default.
    explicit AdagradOptions(double lr = 1e-2) : lr_(lr) {}
    /// Learning rate, for the groups that set none.
    XGRAD_OPTION(double, lr) = 1e-2;
    /// Decay of the learning rate with the step t: lr / (1 + (t-1) lr_decay).
    XGRAD_OPTION(double, lr_decay) = 0.0;
    /// L2 penalty: wd p is added to the gradient, for the groups that set none.
    XGRAD_OPTION(double, weight_decay) = 0.0;
    /// Starting value of every parameter's sum of squared gradients.
    XGRAD_OPTION(double, initial_accumulator_value) = 0.0;
    /// ε >= 0, added to the denominator.
    XGRAD_OPTION(double, eps) = 1e-10;
};

/// RMSprop's options, torch.optim.RMSprop's defaults. Each option is a setter and a getter (XGRAD_OPTION).
struct RMSpropOptions {
    /// The learning rate, 1e-2 by default.
    explicit RMSpropOptions(double lr = 1e-2) : lr_(lr) {}
    /// Learning rate, for the groups that set none.
    XGRAD_OPTION(double, lr) = 1e-2;
    /// α: decay of the running mean of the squared gradients.
    XGRAD_OPTION(double, alpha) = 0.99;
    /// ε >= 0, added to the denominator.
    XGRAD_OPTION(double, eps) = 1e-8;
    /// L2 penalty: wd p is added to the gradient, for the groups that set none.
    XGRAD_OPTION(double, weight_decay) = 0.0;
    /// μ, the momentum factor; 0 keeps no momentum buffer.
    XGRAD_OPTION(double, momentum) = 0.0;
    /// Divide by an estimate of the gradient's standard deviation, sqrt(v - ḡ²), instead of sqrt(v).
    XGRAD_OPTION(bool, centered) = false;
};

/// Stochastic gradient descent with momentum, as torch.optim.SGD.
/// g = grad + wd p;  buf = g (the first step with a momentum) or μ buf + (1 - τ) g;  g = g + μ buf (nesterov) or buf;
/// p -= lr g. The momentum buffer exists from the first step at which a group's momentum is not 0.
template <class T>
class SGD : public Optimizer<T> {
  public:
    /// One group of parameters; invalid options throw std::invalid_argument.
    SGD(std::vector<Parameter<T>> params, SGDOptions options);
    /// Parameter groups with rates of their own; invalid options throw std::invalid_argument.
    SGD(std::vector<ParamGroup<T>> groups, SGDOptions options);
    /// The options it was built with (the groups' own rates are lr(group), weight_decay(group) and momentum(group)).
    const SGDOptions& options() const { return options_; }

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    bool uses_buffer(std::size_t b) const override;
    bool follows_momentum(std::size_t) const override { return true; }
    SGDOptions options_;
};

/// Adam, as torch.optim.Adam. max_exp_avg_sq is allocated only with amsgrad.
/// m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)
/// Adam adds wd p to g; AdamW (decoupled) multiplies p by 1 - lr wd first.
template <class T>
class Adam : public Optimizer<T> {
  public:
    /// One group of parameters; invalid options throw std::invalid_argument.
    Adam(std::vector<Parameter<T>> params, AdamOptions options = AdamOptions());
    /// Parameter groups with rates of their own; invalid options throw std::invalid_argument.
    Adam(std::vector<ParamGroup<T>> groups, AdamOptions options = AdamOptions());
    /// The options it was built with (the groups' own rates are lr(group), weight_decay(group) and momentum(group)).
    const AdamOptions& options() const { return options_; }

  protected:
    /// For AdamW: the name in errors and state, and whether weight decay is decoupled.
    Adam(std::string name, std::vector<ParamGroup<T>> groups, AdamOptions options, bool decoupled);

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    bool uses_buffer(std::size_t b) const override;  // max_exp_avg_sq with amsgrad only
    AdamOptions options_;
    bool decoupled_;
};

/// Adam with decoupled weight decay, as torch.optim.AdamW: p is multiplied by 1 - lr wd before
/// the Adam step instead of wd p being added to the gradient.
template <class T>
class AdamW : public Adam<T> {
  public:
    /// weight_decay defaults to 1e-2 here, as torch.optim.AdamW.
    AdamW(std::vector<Parameter<T>> params, AdamOptions options = AdamOptions().weight_decay(1e-2));
    /// The same over parameter groups with rates of their own.
    AdamW(std::vector<ParamGroup<T>> groups, AdamOptions options = AdamOptions().weight_decay(1e-2));
};

/// Adagrad, as torch.optim.Adagrad.
/// g += wd p;  clr = lr / (1 + (t-1) lr_decay);  s += g²;  p -= clr g / (sqrt(s) + ε)
template <class T>
class Adagrad : public Optimizer<T> {
  public:
    /// One group of parameters; invalid options throw std::invalid_argument.
    Adagrad(std::vector<Parameter<T>> params, AdagradOptions options = AdagradOptions());
    /// Parameter groups with rates of their own; invalid options throw std::invalid_argument.
    Adagrad(std::vector<ParamGroup<T>> groups, AdagradOptions options = AdagradOptions());

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    T initial_value(std::size_t) const override { return static_cast<T>(options_.initial_accumulator_value()); }
    AdagradOptions options_;
};

/// RMSprop, as torch.optim.RMSprop. momentum_buffer is allocated once a group's momentum is above 0,
/// grad_avg only when centered.
/// g += wd p;  v = α v + (1-α) g²;  avg = sqrt(v - ḡ²) (centered, ḡ = α ḡ + (1-α) g) or sqrt(v), + ε;
/// buf = μ buf + g/avg, p -= lr buf (momentum) or p -= lr g/avg
template <class T>
class RMSprop : public Optimizer<T> {
  public:
    /// One group of parameters; invalid options throw std::invalid_argument.
    RMSprop(std::vector<Parameter<T>> params, RMSpropOptions options = RMSpropOptions());
    /// Parameter groups with rates of their own; invalid options throw std::invalid_argument.
    RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions options = RMSpropOptions());

  private:
    void update(std::size_t i, T* p, const T* g, std::size_t n, std::int64_t step, const GroupRates& rates) override;
    bool uses_buffer(std::size_t b) const override;  // momentum_buffer with a momentum, grad_avg when centered
    bool follows_momentum(std::size_t b) const override { return b == 1; }
    RMSpropOptions options_;
};

}  // namespace xgrad::optim
