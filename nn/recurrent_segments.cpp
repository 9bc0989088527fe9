// Checkpointed BPTT: a sequence as segments of k steps, each one checkpoint node (RecurrentOptions::
// checkpoint_every), and a loss computed segment by segment (RecurrentBase::checkpointed_loss).
#include <algorithm>

#include <fmt/format.h>

#include "../autograd/checkpoint.hpp"
#include "../autograd/ops.hpp"
#include "recurrent.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

template <class T>
void RecurrentBase<T>::check_segmentable(std::string_view what) const {
    const bool variational = settings_.variational(this->is_training()), zoned = settings_.zoned(cell_->states());
    const char* refused = spec_.bidirectional ? "a bidirectional layer (its reverse direction needs the whole sequence)"
                          : variational       ? "variational dropout (one mask per whole sequence)"
                          : zoned             ? "zoneout"
                          : track_hidden_grads_ ? "track_hidden_grads"
                                                : nullptr;
    if (refused) throw std::invalid_argument(fmt::format("{}: {} does not combine with {}", this->type_name(), what, refused));
}

// The given initial states, zeros for those not given.
template <class T>
std::vector<Var<T>> RecurrentBase<T>::entering_states(Tape<T>& tape, const std::vector<Var<T>>& initial, std::size_t batch) const {
    std::vector<Var<T>> states;
    for (std::size_t i = 0; i < cell_->states(); ++i) {
        const bool given = i < initial.size() && initial[i].defined();
        states.push_back(given ? initial[i] : tape.leaf(xt::zeros<T>({spec_.num_layers, batch, spec_.hidden_size}), false));
    }
    return states;
}

// Segments of k steps, each one checkpoint node: its inputs are the segment's input and the states
// entering it, its outputs the segment's output and the states leaving it. The inter-layer dropout
// masks were drawn for the whole sequence; each segment gets its rows of them.
namespace {
// Steps [t0, t0 + n) of a time-major (T, ...) tensor or index array.
template <class A>
A steps_of(const A& a, std::size_t t0, std::size_t n) {
    const std::size_t per_step = a.size() / a.shape(0);
    auto shape = a.shape();
    shape[0] = n;
    A part = A::from_shape(shape);
    std::copy_n(a.data() + t0 * per_step, n * per_step, part.data());
    return part;
}

template <class T>
std::vector<Tensor<T>> steps_of(const std::vector<Tensor<T>>& masks, std::size_t t0, std::size_t n) {
    std::vector<Tensor<T>> parts;
    for (const Tensor<T>& m : masks) parts.push_back(steps_of(m, t0, n));
    return parts;
}
}  // namespace

// Segments of k steps, each one checkpoint node: its inputs are the segment's input and the states
// entering it, its outputs the segment's output and the states leaving it. The inter-layer dropout
// masks were drawn for the whole sequence; each segment gets its rows of them.
template <class T>
RecurrentOutput<T> RecurrentBase<T>::run_segments(Tape<T>& tape, const Var<T>& x, const Indices* ids,
                                                  const std::vector<Var<T>>& initial, const std::vector<std::int64_t>& lengths,
                                                  const std::vector<Tensor<T>>& masks) {
    check_segmentable("checkpoint_every");
    const std::size_t steps = ids ? ids->shape(0) : x.shape()[0], batch = ids ? ids->shape(1) : x.shape()[1];
    const std::size_t S = cell_->states(), k = settings_.checkpoint_every();
    std::vector<Var<T>> states = entering_states(tape, initial, batch);
    std::vector<Var<T>> outputs;
    for (std::size_t t0 = 0; t0 < steps; t0 += k) {
        const std::size_t n = std::min(k, steps - t0);
        std::vector<std::int64_t> part_lengths;
        for (std::int64_t length : lengths) {
            part_lengths.push_back(std::clamp<std::int64_t>(length - static_cast<std::int64_t>(t0), 0, static_cast<std::int64_t>(n)));
        }
        auto part_ids = ids ? std::make_shared<const Indices>(steps_of(*ids, t0, n)) : nullptr;
        std::vector<Var<T>> inputs = states;
        if (!ids) inputs.insert(inputs.begin(), narrow(x, 0, t0, n));
        auto segment = [this, part_ids, part_lengths, part_masks = steps_of(masks, t0, n), S](const std::vector<Var<T>>& in) {
            const std::size_t first_state = part_ids ? 0 : 1;
            const std::vector<Var<T>> entering(in.begin() + static_cast<std::ptrdiff_t>(first_state), in.end());
            RecurrentOutput<T> r = run_whole(in[0].tape(), part_ids ? Var<T>() : in[0], part_ids.get(), entering, part_lengths,
                                             part_masks);
            std::vector<Var<T>> out{r.output};
            for (std::size_t i = 0; i < S; ++i) out.push_back(r.states[i]);
            return out;
        };
        const std::vector<Var<T>> result = checkpoint<T>(segment, inputs);
        outputs.push_back(result[0]);
        states.assign(result.begin() + 1, result.end());
    }
    return {concat(outputs, 0), states.at(0), states};
}

// Σ_segments segment_loss(layer output over the segment): each segment's layer, head and loss are
// one checkpoint node, whose outputs are the segment's loss and the states leaving it. The
// inter-layer dropout masks are drawn for the whole sequence first, as a whole-sequence forward
// draws them, so the loss and its gradients equal that of the layer run at once.
template <class T>
typename RecurrentBase<T>::SegmentedLoss RecurrentBase<T>::checkpointed_loss(Graph<T>& graph, const Indices& ids,
                                                                             const std::vector<Var<T>>& initial,
                                                                             std::size_t segment, SegmentLossFn segment_loss,
                                                                             const std::vector<Generator*>& generators) {
    const std::string& who = this->type_name();
    check_segmentable("checkpointed_loss");
    if (settings_.batch_first()) throw std::invalid_argument(fmt::format("{}: checkpointed_loss takes time-major ids (T, B)", who));
    if (segment == 0) throw std::invalid_argument(fmt::format("{}: checkpointed_loss needs a segment of at least one step", who));
    if (!segment_loss) throw std::invalid_argument(fmt::format("{}: checkpointed_loss needs a segment loss", who));
    if (settings_.dropout_input() > 0 && this->is_training()) {
        throw std::invalid_argument(fmt::format("{}: dropout_input does not apply to index input (drop the one-hot rows yourself)", who));
    }
    check_recurrent_ids(who, ids, spec_.input_size);
    check_call({ids.shape(0), ids.shape(1), spec_.input_size}, initial, {});
    const std::size_t steps = ids.shape(0), batch = ids.shape(1);
    const std::vector<Tensor<T>> masks = layer_masks(steps, batch);
    SegmentedLoss out;
    out.states = entering_states(graph.tape(), initial, batch);
    for (std::size_t t0 = 0; t0 < steps; t0 += segment) {
        const std::size_t n = std::min(segment, steps - t0);
        // Runs again in backward, after this call has returned: everything it uses is held by value.
        auto block = [this, part_ids = std::make_shared<const Indices>(steps_of(ids, t0, n)), part_masks = steps_of(masks, t0, n), t0,
                      segment_loss](const std::vector<Var<T>>& entering) {
            RecurrentOutput<T> r = run_whole(entering[0].tape(), Var<T>(), part_ids.get(), entering, {}, part_masks);
            std::vector<Var<T>> result{segment_loss(r.output, t0)};
            if (result[0].numel() != 1) {
                throw ShapeError(fmt::format("{}: checkpointed_loss: the segment loss must be a scalar, got shape {}",
                                             this->type_name(), shape_str(result[0].shape())));
            }
            result.insert(result.end(), r.states.begin(), r.states.end());
            return result;
        };
        const std::vector<Var<T>> result = checkpoint<T>(block, out.states, generators);
        out.loss = out.loss.defined() ? out.loss + result[0] : result[0];
        out.states.assign(result.begin() + 1, result.end());
    }
    return out;
}

#define RECURRENT_SEGMENTS_INSTANCES(T)                                                                                              \
    template void RecurrentBase<T>::check_segmentable(std::string_view) const;                                         \
    template std::vector<Var<T>> RecurrentBase<T>::entering_states(Tape<T>&, const std::vector<Var<T>>&, std::size_t) const; \
    template RecurrentOutput<T> RecurrentBase<T>::run_segments(Tape<T>&, const Var<T>&, const Indices*,                \
                                                               const std::vector<Var<T>>&, const std::vector<std::int64_t>&, \
                                                               const std::vector<Tensor<T>>&);                          \
    template RecurrentBase<T>::SegmentedLoss RecurrentBase<T>::checkpointed_loss(Graph<T>&, const Indices&,             \
                                                                                 const std::vector<Var<T>>&, std::size_t, \
                                                                                 SegmentLossFn, const std::vector<Generator*>&);
XGRAD_FOR_FLOAT_AND_DOUBLE(RECURRENT_SEGMENTS_INSTANCES)

}  // namespace xgrad::nn
