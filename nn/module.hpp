/// @file
/// Modules: named parameters and submodules, train/eval mode, and state dicts that save to and
/// load from safetensors files with PyTorch's names.
///
/// @code
///   class TwoLayer : public xgrad::nn::Module<float> {
///     public:
///       TwoLayer() : Module("TwoLayer") { register_module("fc1", fc1); register_module("fc2", fc2); }
///       xgrad::Var<float> forward(const xgrad::Var<float>& x) { return fc2.forward(xgrad::relu(fc1.forward(x))); }
///       xgrad::nn::Linear<float> fc1{4, 8}, fc2{8, 2};
///   };
///   TwoLayer net;
///   net.named_parameters();        // "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"
///   net.save("net.safetensors");
/// @endcode
///
/// Modules register references to their members, so they can be neither copied nor moved. To build
/// one in a function, return it by std::shared_ptr (or std::unique_ptr), as libtorch's module holders
/// do, and register it as an owned child:
///
/// @code
///   std::shared_ptr<Encoder> make_encoder(std::size_t hidden);
///   class Seq2Seq : public xgrad::nn::Module<float> {
///     public:
///       Seq2Seq() : Module("Seq2Seq") { encoder = register_module("encoder", make_encoder(256)); }
///       std::shared_ptr<Encoder> encoder;
///   };
/// @endcode
#pragma once

#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../autograd/parameter.hpp"
#include "../tensor/tensor.hpp"

namespace xgrad::nn {

/// Parameter values by their dotted names ("rnn.weight_ih_l0"), as PyTorch's state_dict().
template <class T>
using StateDict = std::map<std::string, Tensor<T>>;

/// The base of every layer and model: named parameters and submodules, train/eval mode, and
/// state dicts that save to and load from safetensors files with PyTorch's names. Derive from it,
/// register parameters and children in the constructor, and give the class a forward of your own
/// (modules have no common forward signature). Neither copyable nor movable (see the file's description).
template <class T>
class Module {
  public:
    /// `type_name` names the module in error messages ("Linear", "TwoLayer").
    explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
    /// Releases the children registered by pointer; children held by reference are the owner's.
    virtual ~Module() = default;
    /// Not copyable: a module holds references to its members.
    ///@{
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    ///@}

    /// The name given at construction, as error messages print it.
    const std::string& type_name() const { return type_name_; }
    /// Depth-first in registration order, names joined with '.' ("rnn.weight_ih_l0").
    std::vector<std::pair<std::string, Parameter<T>>> named_parameters() const;
    /// The handles of named_parameters(), in the same order (what an optimizer takes).
    std::vector<Parameter<T>> parameters() const;
    std::size_t parameter_count() const;  ///< total number of elements
    /// Zeros the gradient of every parameter, submodules' included.
    void zero_grad();
    void train(bool on = true);  ///< this module and every submodule
    /// train(false): dropout and zoneout become their expectations.
    void eval() { train(false); }
    /// Whether the module is in training mode (the default) rather than evaluation.
    bool is_training() const { return training_; }

    StateDict<T> state_dict() const;  ///< copies of every parameter's value
    /// Every name must be present with the same shape and finite values, and no other name may
    /// appear; nothing is changed unless all of them fit. Throws ShapeError / std::invalid_argument naming the
    /// module, the parameter and the shapes.
    void load_state_dict(const StateDict<T>& state);
    void save(const std::string& path) const;  ///< safetensors, written atomically
    /// Reads a safetensors file (load_safetensors, converting its dtype to T) and loads it as
    /// load_state_dict does: refuses missing, extra, misshapen or non-finite entries.
    void load(const std::string& path);

  protected:
    /// A new parameter holding `value`, named `name` in this module. The name must be non-empty,
    /// without a dot and not taken yet (std::invalid_argument). Keep the returned handle as the
    /// member the forward uses.
    Parameter<T> register_parameter(const std::string& name, Tensor<T> value);
    /// A child module held by reference (usually a member): its parameters appear as "name.*".
    /// It must outlive this module's use. The name is checked as register_parameter's; a child
    /// that is this module or contains it (a cycle) throws std::invalid_argument.
    void register_module(const std::string& name, Module<T>& child);
    /// An owned child (from a factory): kept alive with this module, returned for convenience.
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
        if (!child) throw std::invalid_argument(type_name_ + ": register_module '" + name + "': the module is null");
        register_module(name, static_cast<Module<T>&>(*child));
        owned_.push_back(child);
        return child;
    }
    /// The same from a factory that returns unique ownership (nn::make_recurrent); now shared.
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::unique_ptr<M> child) {
        return register_module(name, std::shared_ptr<M>(std::move(child)));
    }

  private:
    void claim_name(const std::string& name);  // throws unless valid and new

    std::string type_name_;
    std::vector<std::pair<std::string, Parameter<T>>> parameters_;
    std::vector<std::pair<std::string, Module<T>*>> children_;
    std::vector<std::shared_ptr<Module<T>>> owned_;  // children registered by shared_ptr
    std::set<std::string> names_;  // of parameters and children: registering stays O(log n) for deep stacks
    bool training_ = true;
};

extern template class Module<float>;
extern template class Module<double>;

}  // namespace xgrad::nn
