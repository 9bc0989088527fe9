#include "memory_estimate.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "../guards.hpp"
#include "corpus.hpp"

namespace charlm {

double training_memory_bytes(const Config& c, std::size_t vocabulary, std::size_t corpus_chars) {
    // An upper bound, term by term, each coefficient measured as peak RSS over RNN/LSTM/GRU, both
    // implementations, 1-2 layers, and set above the largest seen (tests/test_charlm.cpp checks it).
    const double P = static_cast<double>(parameter_count(c, vocabulary)), V = static_cast<double>(vocabulary);
    const double H = static_cast<double>(c.hidden), L = static_cast<double>(c.layers), N = static_cast<double>(corpus_chars);
    const double GH = static_cast<double>(xgrad::nn::make_cell<float>(c.cell)->gates()) * H;
    // Optimizer state per parameter; then every parameter lives as value, gradient and that state,
    // plus, at the peak, either a step's graph (a copy of each value and its gradient, and the fused
    // kernel's weight gradients) or a save (copies of the weights and the state being written).
    const double state = optimizer_state_per_parameter(c.optimizer);
    const double param_floats = (2 + state) * P + (3 + state) * P;
    // Per training position (seq x batch): the activations each layer keeps for backward and their
    // gradients (the graph path keeps what its ops' backwards read, a little more than the fused
    // kernel; recurrent dropout and zoneout run it), and the logits with their gradient.
    // Checkpointed segments keep that for one segment at a time (recomputed in backward; counted
    // 1.5 times, as the resident set keeps some of the previous segment's freed blocks), plus the
    // states between segments and the step's indices and targets (two int64 per position).
    const bool graph = c.impl == "graph" || c.zoneout > 0 || c.variational_dropout > 0;
    const bool segmented = c.checkpoint_segment > 0 && c.checkpoint_segment < c.seq;
    const double seq = static_cast<double>(c.seq), B = static_cast<double>(c.batch);
    const double active_steps = segmented ? std::min(seq, 1.5 * static_cast<double>(c.checkpoint_segment)) : seq;
    const double states = static_cast<double>(xgrad::nn::make_cell<float>(c.cell)->states());
    const double segment_states = segmented ? std::ceil(seq / static_cast<double>(c.checkpoint_segment)) * 2 * states * L * B * H : 0;
    // The fused backward, one layer at a time, joins [h, x] for the weight gradients' one product
    // (x is H wide above the first layer) and transposes its (2H, GH) result.
    const double joined = graph ? 0 : active_steps * B * 2 * H + 2 * H * GH;
    const double train_floats = active_steps * B * (L * (graph ? 7 * H + 3 * GH : 4.5 * H + 2.5 * GH) + 3 * V) + segment_states +
                                joined + 4 * seq * B;
    // Validation streams 256 steps of up to 64 streams at a time, forward only.
    const double val_chars = N * c.val_fraction;
    const double streams = c.val_fraction > 0 ? std::clamp(std::floor(val_chars / 1024), 1.0, 64.0) : 0.0;
    const double eval_floats = 256 * streams * (L * (4.5 * H + 2 * GH) + 1.5 * V);
    // The text as code points and as indices, twice (training and validation copies); the process
    // itself, with the 2 MiB the GEMM choice writes between timed calls of a step's product.
    const double corpus_bytes = 28 * N, process_bytes = 26e6;
    return process_bytes + corpus_bytes + 4 * (param_floats + std::max(train_floats, eval_floats));
}

void check_memory(const Config& c, std::size_t vocabulary, std::size_t corpus_chars, const std::string& where) {
    const bool segmentable = c.checkpoint_segment == 0 && c.seq >= 16 && c.zoneout == 0 && c.variational_dropout == 0;
    if (auto why = examples::beyond_memory(fmt::format("{}: training this model", where), training_memory_bytes(c, vocabulary, corpus_chars),
                                           fmt::format("--hidden, --layers, --seq or --batch{}", segmentable ? ", or add --checkpoint-activations" : ""))) {
        throw InputError(*why);
    }
}

}  // namespace charlm
