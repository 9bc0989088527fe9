// A training run split over ranks (Ranks, training.hpp): each rank's share of the streams' carried
// state, every rank's share gathered back into the whole, and each rank's own dropout seed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model.hpp"
#include "training.hpp"

namespace charlm {

// Rows [first, first + count) of a carried state (layers, B, hidden): one rank's streams.
State rows_of(const State& full, std::size_t first, std::size_t count);

// (layers, B / ranks, hidden) on each rank -> (layers, B, hidden), streams in rank order.
xgrad::Tensor<float> gather_rows(const xgrad::Tensor<float>& part, const Ranks& ranks);

// A generator's seed for rank r at a step: ranks other than 0 draw their own dropout masks, the
// same in every run (a resumed one too) of the same seed and ranks.
std::uint64_t rank_seed(std::uint64_t seed, int rank, std::int64_t step);

}  // namespace charlm
