#include "ranks.hpp"

#include <algorithm>
#include <span>
#include <vector>

namespace charlm {

State rows_of(const State& full, std::size_t first, std::size_t count) {
    auto part = [&](const xgrad::Tensor<float>& t) {
        if (t.dimension() != 3) return t;
        xgrad::Tensor<float> out = xgrad::Tensor<float>::from_shape({t.shape(0), count, t.shape(2)});
        for (std::size_t l = 0; l < t.shape(0); ++l) {
            const float* from = t.data() + (l * t.shape(1) + first) * t.shape(2);
            std::copy(from, from + count * t.shape(2), out.data() + l * count * t.shape(2));
        }
        return out;
    };
    return {part(full.h), part(full.c)};
}

xgrad::Tensor<float> gather_rows(const xgrad::Tensor<float>& part, const Ranks& ranks) {
    if (part.dimension() != 3 || ranks.size() == 1) return part;
    const std::vector<float> all = ranks.all_gather(std::span<const float>(part.data(), part.size()));
    const std::size_t layers = part.shape(0), rows = part.shape(1), hidden = part.shape(2);
    const auto size = static_cast<std::size_t>(ranks.size());
    xgrad::Tensor<float> whole = xgrad::Tensor<float>::from_shape({layers, rows * size, hidden});
    for (std::size_t r = 0; r < size; ++r) {
        for (std::size_t l = 0; l < layers; ++l) {
            const float* from = all.data() + (r * layers + l) * rows * hidden;
            std::copy(from, from + rows * hidden, whole.data() + (l * rows * size + r * rows) * hidden);
        }
    }
    return whole;
}

std::uint64_t rank_seed(std::uint64_t seed, int rank, std::int64_t step) {
    std::uint64_t x = seed ^ (0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(rank)) ^ (static_cast<std::uint64_t>(step) << 20);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;  // splitmix64's finaliser
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

}  // namespace charlm
