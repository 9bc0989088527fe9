/// @file
/// Adam's and AdamW's update of one parameter tensor, compiled once per instruction set
/// (adam_kernel.cpp, tensor/isa_kernels.hpp). Internal to the optimizers (rules.cpp).
#pragma once

#include <cstddef>

#include "../tensor/isa_kernels.hpp"

namespace xgrad::optim {

/// One step's coefficients: step_size = lr / (1 - β₁ᵗ), root2 = √(1 - β₂ᵗ), decay = 1 - lr·λ.
template <class T>
struct AdamCoefficients {
    /// β₁, β₂, the step's values above, ε and the weight decay λ
    ///@{
    T b1, b2, step_size, root2, eps, wd, decay;
    ///@}
    /// AdamW's decay; AMSGrad's running maximum
    ///@{
    bool decoupled, amsgrad;
    ///@}
};

/// p ← p - step_size · m / (√v / root2 + eps), with m, v (and v_max for AMSGrad) updated in place.
XGRAD_FOR_EACH_ISA(template <class T> void adam_update(T* p, const T* grad, T* m, T* v, T* v_max, std::size_t n,
                                                   const AdamCoefficients<T>& k);)

}  // namespace xgrad::optim
