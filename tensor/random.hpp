/// @file
/// A seeded random generator and the usual weight initializers. Same seed, same numbers, on
/// every platform (the distributions are our own, not the standard library's).
///
/// @code
///   xgrad::Generator gen(42);
///   xgrad::Tensor<float> w = xgrad::xavier_uniform<float>({256, 96}, gen);
/// @endcode
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "tensor.hpp"

namespace xgrad {

/// A seeded random generator (the 64-bit Mersenne Twister) with distributions of its own, so the
/// same seed gives the same numbers everywhere. Not synchronized: one generator per thread.
class Generator {
  public:
    /// A generator seeded with `seed`.
    explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}
    /// Restarts the engine from `s`. A second normal value normal() already drew is still handed out first.
    void seed(std::uint64_t s) { engine_.seed(s); }
    /// The engine's next 64 random bits (what seeds other generators).
    std::uint64_t next_u64() { return engine_(); }
    /// Uniform in [0, 1) with 53 random bits.
    double uniform01() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
    /// Uniform in [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform01(); }
    /// Normal with this mean and standard deviation (Marsaglia's polar method: values come in
    /// pairs, the second kept for the next call).
    double normal(double mean, double stddev);
    /// Uniform integer in [0, n).
    /// Unbiased (rejection sampling); n = 0 throws std::invalid_argument.
    std::uint64_t below(std::uint64_t n);
    /// The full state as text, and back, for checkpoints.
    /// set_state throws std::invalid_argument for malformed text.
    ///@{
    std::string state() const;
    void set_state(const std::string& state);
    ///@}

  private:
    std::mt19937_64 engine_;
    bool has_spare_ = false;
    double spare_ = 0.0;
};

/// The generator modules draw their initial weights from when none is given, as torch's global
/// one; manual_seed(s) makes model construction reproducible. Not synchronized across threads.
Generator& default_generator();
/// Replaces default_generator() with a fresh Generator(seed), as torch.manual_seed.
void manual_seed(std::uint64_t seed);

/// A tensor of `shape`, each element uniform in [lo, hi) (for float, rounding may give exactly hi).
/// ShapeError if the element count overflows.
template <class T>
Tensor<T> uniform(const Shape& shape, double lo, double hi, Generator& gen);
/// A tensor of `shape`, each element normal with this mean and standard deviation.
template <class T>
Tensor<T> normal(const Shape& shape, double mean, double stddev, Generator& gen);
/// Bernoulli(keep) mask of 0 and 1.
/// Each element is 1 with probability `keep`.
template <class T>
Tensor<T> bernoulli(const Shape& shape, double keep, Generator& gen);

/// Xavier (Glorot) uniform: U(-b, b), b = gain · sqrt(6 / (fan_in + fan_out)), as torch.nn.init.
/// PyTorch's fan rules: fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field.
/// The shape needs rank >= 2 (ShapeError).
template <class T>
Tensor<T> xavier_uniform(const Shape& shape, Generator& gen, double gain = 1.0);
/// Xavier (Glorot) normal: N(0, σ²), σ = gain · sqrt(2 / (fan_in + fan_out)); fans as xavier_uniform.
template <class T>
Tensor<T> xavier_normal(const Shape& shape, Generator& gen, double gain = 1.0);
/// Kaiming (He) initialization over fan_in with gain sqrt(2) (ReLU), as torch.nn.init's defaults.
/// Uniform: U(-b, b), b = gain · sqrt(3 / fan_in); fans as xavier_uniform.
template <class T>
Tensor<T> kaiming_uniform(const Shape& shape, Generator& gen, double gain = 1.4142135623730951);
/// Kaiming (He) normal: N(0, σ²), σ = gain / sqrt(fan_in); fans as xavier_uniform.
template <class T>
Tensor<T> kaiming_normal(const Shape& shape, Generator& gen, double gain = 1.4142135623730951);

}  // namespace xgrad
