// XGRAD_OPTION(type, name): a libtorch-style option in an options struct. `opts.name(value)` sets
// it and returns the struct for chaining, `opts.name()` reads it; a default follows the macro:
//
//   struct SGDOptions { XGRAD_OPTION(double, momentum) = 0.0; };
//   SGDOptions().momentum(0.9).momentum();   // 0.9
#pragma once

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
