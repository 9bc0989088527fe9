#include "random.hpp"
#include "instantiate.hpp"

#include <cmath>
#include <sstream>

#include <fmt/format.h>

namespace xgrad {

double Generator::normal(double mean, double stddev) {
    // Marsaglia's polar method; the second value of each pair is kept for the next call.
    if (has_spare_) {
        has_spare_ = false;
        return mean + stddev * spare_;
    }
    double u, v, s;
    do {
        u = 2.0 * uniform01() - 1.0;
        v = 2.0 * uniform01() - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * f;
    has_spare_ = true;
    return mean + stddev * u * f;
}

std::uint64_t Generator::below(std::uint64_t n) {
    if (n == 0) throw std::invalid_argument("Generator::below: n must be positive");
    // Rejection sampling keeps the result unbiased.
    std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t r;
    do r = engine_();
    while (r >= limit);
    return r % n;
}

std::string Generator::state() const {
    std::ostringstream out;
    out << engine_ << ' ' << has_spare_ << ' ' << fmt::format("{:a}", spare_);
    return out.str();
}

void Generator::set_state(const std::string& state) {
    std::istringstream in(state);
    std::mt19937_64 engine;
    bool has_spare = false;
    std::string spare_text;
    in >> engine >> has_spare >> spare_text;
    if (in.fail()) throw std::invalid_argument("Generator::set_state: malformed generator state");
    engine_ = engine;
    has_spare_ = has_spare;
    spare_ = std::strtod(spare_text.c_str(), nullptr);
}

Generator& default_generator() {
    static Generator generator(0);
    return generator;
}

void manual_seed(std::uint64_t seed) {
    default_generator() = Generator(seed);
}

namespace {
// A tensor of `shape` to be filled, its element count checked first: xtensor computes strides
// with unchecked products.
template <class T>
Tensor<T> uninitialized(std::string_view op, const Shape& shape) {
    numel(shape, op);
    return Tensor<T>::from_shape(shape);
}
}  // namespace

template <class T>
Tensor<T> uniform(const Shape& shape, double lo, double hi, Generator& gen) {
    Tensor<T> out = uninitialized<T>("uniform", shape);
    for (T& x : out) x = static_cast<T>(gen.uniform(lo, hi));
    return out;
}

template <class T>
Tensor<T> normal(const Shape& shape, double mean, double stddev, Generator& gen) {
    Tensor<T> out = uninitialized<T>("normal", shape);
    for (T& x : out) x = static_cast<T>(gen.normal(mean, stddev));
    return out;
}

template <class T>
Tensor<T> bernoulli(const Shape& shape, double keep, Generator& gen) {
    Tensor<T> out = uninitialized<T>("bernoulli", shape);
    for (T& x : out) x = gen.uniform01() < keep ? T(1) : T(0);
    return out;
}

namespace {
struct Fans {
    double in, out;
};
Fans fans(std::string_view op, const Shape& shape) {
    if (shape.size() < 2) {
        throw ShapeError(fmt::format("{}: needs a tensor of rank >= 2, got shape {}", op, shape_str(shape)));
    }
    double receptive = 1.0;
    for (std::size_t i = 2; i < shape.size(); ++i) receptive *= static_cast<double>(shape[i]);
    return {static_cast<double>(shape[1]) * receptive, static_cast<double>(shape[0]) * receptive};
}
}  // namespace

template <class T>
Tensor<T> xavier_uniform(const Shape& shape, Generator& gen, double gain) {
    Fans f = fans("xavier_uniform", shape);
    double bound = gain * std::sqrt(6.0 / (f.in + f.out));
    return uniform<T>(shape, -bound, bound, gen);
}

template <class T>
Tensor<T> xavier_normal(const Shape& shape, Generator& gen, double gain) {
    Fans f = fans("xavier_normal", shape);
    return normal<T>(shape, 0.0, gain * std::sqrt(2.0 / (f.in + f.out)), gen);
}

template <class T>
Tensor<T> kaiming_uniform(const Shape& shape, Generator& gen, double gain) {
    Fans f = fans("kaiming_uniform", shape);
    double bound = gain * std::sqrt(3.0 / f.in);
    return uniform<T>(shape, -bound, bound, gen);
}

template <class T>
Tensor<T> kaiming_normal(const Shape& shape, Generator& gen, double gain) {
    Fans f = fans("kaiming_normal", shape);
    return normal<T>(shape, 0.0, gain / std::sqrt(f.in), gen);
}

#define RANDOM_INSTANCES(T)                                                       \
    template Tensor<T> uniform<T>(const Shape&, double, double, Generator&);       \
    template Tensor<T> normal<T>(const Shape&, double, double, Generator&);        \
    template Tensor<T> bernoulli<T>(const Shape&, double, Generator&);             \
    template Tensor<T> xavier_uniform<T>(const Shape&, Generator&, double);        \
    template Tensor<T> xavier_normal<T>(const Shape&, Generator&, double);         \
    template Tensor<T> kaiming_uniform<T>(const Shape&, Generator&, double);       \
    template Tensor<T> kaiming_normal<T>(const Shape&, Generator&, double);
XGRAD_FOR_FLOAT_AND_DOUBLE(RANDOM_INSTANCES)

}  // namespace xgrad
