// A seeded random generator and the usual weight initializers. Same seed, same numbers, on
// every platform (the distributions are our own, not the standard library's).
//
//   xgrad::Generator gen(42);
//   xgrad::Tensor<float> w = xgrad::xavier_uniform<float>({256, 96}, gen);
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "tensor.hpp"

namespace xgrad {

class Generator {
  public:
    explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}
    void seed(std::uint64_t s) { engine_.seed(s); }
    std::uint64_t next_u64() { return engine_(); }
    // Uniform in [0, 1) with 53 random bits.
    double uniform01() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform01(); }
    double normal(double mean, double stddev);
    // Uniform integer in [0, n).
    std::uint64_t below(std::uint64_t n);
    // The full state as text, and back, for checkpoints.
    std::string state() const;
    void set_state(const std::string& state);

  private:
    std::mt19937_64 engine_;
    bool has_spare_ = false;
    double spare_ = 0.0;
};

// The generator modules draw their initial weights from when none is given, as torch's global
// one; manual_seed(s) makes model construction reproducible. Not synchronized across threads.
Generator& default_generator();
void manual_seed(std::uint64_t seed);

template <class T>
Tensor<T> uniform(const Shape& shape, double lo, double hi, Generator& gen);
template <class T>
Tensor<T> normal(const Shape& shape, double mean, double stddev, Generator& gen);
// Bernoulli(keep) mask of 0 and 1.
template <class T>
Tensor<T> bernoulli(const Shape& shape, double keep, Generator& gen);

// PyTorch's fan rules: fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field.
template <class T>
Tensor<T> xavier_uniform(const Shape& shape, Generator& gen, double gain = 1.0);
template <class T>
Tensor<T> xavier_normal(const Shape& shape, Generator& gen, double gain = 1.0);
// Kaiming (He) initialization over fan_in with gain sqrt(2) (ReLU), as torch.nn.init's defaults.
template <class T>
Tensor<T> kaiming_uniform(const Shape& shape, Generator& gen, double gain = 1.4142135623730951);
template <class T>
Tensor<T> kaiming_normal(const Shape& shape, Generator& gen, double gain = 1.4142135623730951);

}  // namespace xgrad
