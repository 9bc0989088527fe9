/// @file
/// XGRAD_OPTION(type, name): an option as libtorch's TORCH_ARG declares one, the one style of every
/// options struct in xgrad (layers, losses, optimizers, checks). `opts.name(value)` sets it and
/// returns the struct for chaining, `opts.name()` reads it; a default follows the macro:
///
/// @code
///   struct SGDOptions { XGRAD_OPTION(double, momentum) = 0.0; };
///   SGDOptions().momentum(0.9).momentum();   // 0.9
/// @endcode
///
/// The API reference shows each option as a member with its default (`double momentum = 0.0`):
/// read it as the setter and getter above.
#pragma once

/// Declares option `name` of type `type`: a chainable setter `name(value)`, a getter `name()`, and
/// the private member `name_` that the default after the macro initializes. It leaves the struct's
/// access private, so declare constructors before the options.
#define XGRAD_OPTION(type, name)                 \
  public:                                        \
    auto& name(const type& value) {              \
        name##_ = value;                         \
        return *this;                            \
    }                                            \
    const type& name() const { return name##_; } \
                                                 \
  private:                                       \
    type name##_
