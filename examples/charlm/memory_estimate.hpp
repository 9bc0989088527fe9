// The memory a training run may need, estimated from its configuration before anything is allocated,
// so that a model too large for the machine is refused with one line rather than killed mid-run.
#pragma once

#include <cstddef>
#include <string>

#include "model.hpp"

namespace charlm {

// An upper bound on the peak memory of `train` (either implementation) with this configuration on a
// corpus of `corpus_chars` characters: the process, the text, parameters with gradients and
// optimizer state, and the larger of a training step's and a validation chunk's activations.
double training_memory_bytes(const Config& config, std::size_t vocabulary, std::size_t corpus_chars);
// Refuses, with one line giving the estimate and the limit (80% of RAM), a model whose training
// could need more memory than that.
void check_memory(const Config& config, std::size_t vocabulary, std::size_t corpus_chars, const std::string& where);

}  // namespace charlm
