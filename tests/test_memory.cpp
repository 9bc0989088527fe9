// Memory bounds that only a feature can meet, counted in heap bytes (malloc_usable_size of every
// block, through the benchmark's malloc wrapper): deterministic for a given build, unlike RSS.
#include <malloc.h>
#include <memory>
#include <ranges>
#include <vector>
#include <sys/resource.h>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <xgrad/xgrad.hpp>

#include "heap_meter.hpp"

namespace nn = xgrad::nn;

namespace {
// Peak heap bytes above the level before `run`, while it runs.
template <class Run>
std::size_t heap_peak_of(Run run) {
    run();  // once before: the GEMMs' choices are timed, on scratch of their own, the first time a shape is seen
    bench::reset_peak_heap();
    const std::size_t before = bench::heap_in_use();
    run();
    return bench::peak_heap() - before;
}

// Peak heap bytes above the starting level over one training step of an LSTM layer on a long
// sequence: forward, a loss on the output and the final states, backward.
std::size_t step_peak(nn::RecurrentImplementation impl, std::size_t checkpoint_every) {
    constexpr std::size_t T = 4096, B = 4, I = 8, H = 64;
    xgrad::Generator gen(3);
    nn::LSTM<float> layer(nn::LSTMOptions(I, H).implementation(impl).checkpoint_every(checkpoint_every), gen);
    const xgrad::Tensor<float> input = xgrad::uniform<float>({T, B, I}, -1, 1, gen);
    return heap_peak_of([&] {
        xgrad::Graph<float> g;
        auto r = layer.forward_states(g.constant(input));
        auto loss = xgrad::sum(r.output) + xgrad::sum(r.states[0]) + xgrad::sum(r.states[1]);
        loss.backward();
    });
}
}  // namespace

TEST_CASE("checkpoint_every(64) trains an LSTM over T = 4096 in a fraction of the whole sequence's memory, both paths") {
    // Without checkpointing the fused kernel keeps T x B x (4 gates + 2 states + output) values and
    // the graph path every step's intermediates; with segments of 64 steps, what is left is the
    // output and its gradient, the states every 64 steps and one segment's activations at a time.
    // Measured: fused 34.8 -> 13.6 MB, graph 101.5 -> 13.6 MB; the bounds leave room for allocator
    // rounding only.
    for (auto impl : {nn::RecurrentImplementation::fused, nn::RecurrentImplementation::graph}) {
        const bool fused = impl == nn::RecurrentImplementation::fused;
        const std::size_t whole = step_peak(impl, 0), segmented = step_peak(impl, 64);
        MESSAGE(fmt::format("{}: whole sequence {:.1f} MB, checkpoint_every(64) {:.1f} MB", fused ? "fused" : "graph", whole / 1e6,
                            segmented / 1e6));
        CHECK(segmented * 100 < whole * (fused ? 45 : 15));
    }
}

namespace {
// The Elman cell as it was before it declared that its backward works from the states alone.
struct ElmanKeepingGates : nn::cells::Elman {
    static constexpr bool backward_reads_gates = true;
};

template <class Cell>
std::size_t elman_step_peak() {
    constexpr std::size_t T = 4096, B = 4, I = 8, H = 64;
    xgrad::Generator gen(7);
    nn::Recurrent<Cell> layer(nn::RecurrentOptions(I, H).implementation(nn::RecurrentImplementation::fused), gen);
    const xgrad::Tensor<float> input = xgrad::uniform<float>({T, B, I}, -1, 1, gen);
    return heap_peak_of([&] {
        xgrad::Graph<float> g;
        auto loss = xgrad::sum(xgrad::tanh(layer.forward(g.constant(input)).output));
        loss.backward();
    });
}
}  // namespace

TEST_CASE("a cell whose backward does not read its gates lets the fused kernel free them after forward") {
    // One T x B x H buffer less at the peak (measured: 21.5 -> 17.3 MB).
    const std::size_t freed = elman_step_peak<nn::cells::Elman>(), kept = elman_step_peak<ElmanKeepingGates>();
    MESSAGE(fmt::format("Elman fused step over T = 4096: gates kept {:.1f} MB, freed {:.1f} MB", kept / 1e6, freed / 1e6));
    CHECK(freed * 100 < kept * 90);
}

namespace {
// The same for a character-level language model's step: indices -> LSTM -> Linear -> cross-entropy,
// the loss computed at once or by checkpointed_loss in segments of `segment` steps.
std::size_t language_model_step_peak(nn::RecurrentImplementation impl, std::size_t segment) {
    constexpr std::size_t T = 4096, B = 4, V = 32, H = 64;
    xgrad::Generator gen(5);
    nn::LSTM<float> layer(nn::LSTMOptions(V, H).implementation(impl), gen);
    nn::Linear<float> head(H, V, true, gen);
    xgrad::Indices ids = xgrad::Indices::from_shape({T, B}), targets = ids;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        ids.data()[i] = static_cast<std::int64_t>((7 * i) % V);
        targets.data()[i] = static_cast<std::int64_t>((7 * i + 7) % V);
    }
    xgrad::CrossEntropyOptions sum;
    sum.reduction(xgrad::CrossEntropyOptions::Reduction::sum);
    return heap_peak_of([&] {
        xgrad::Graph<float> g;
        xgrad::Var<float> loss;
        if (segment == 0) {
            loss = xgrad::cross_entropy(head.forward(layer.forward_indices(g, ids).output), targets, sum);
        } else {
            auto segment_loss = [&](const xgrad::Var<float>& output, std::size_t t0) {
                const std::size_t n = output.shape()[0];
                xgrad::Indices part = xgrad::Indices::from_shape({n, B});
                std::copy_n(targets.data() + t0 * B, n * B, part.data());
                return xgrad::cross_entropy(head.forward(output), part, sum);
            };
            loss = layer.checkpointed_loss(g, ids, {}, segment, segment_loss).loss;
        }
        loss.backward();
    });
}
}  // namespace

TEST_CASE("checkpointed_loss trains a language model over T = 4096 in under 15% of the whole sequence's memory, both paths") {
    // With the head and the loss inside each segment nothing of size T x B x H is left: the step keeps
    // the states every 64 steps, the indices and targets, and one segment's activations at a time.
    for (auto impl : {nn::RecurrentImplementation::fused, nn::RecurrentImplementation::graph}) {
        const bool fused = impl == nn::RecurrentImplementation::fused;
        const std::size_t whole = language_model_step_peak(impl, 0), segmented = language_model_step_peak(impl, 64);
        MESSAGE(fmt::format("{}: whole sequence {:.1f} MB, checkpointed_loss(64) {:.1f} MB ({:.1f}%)", fused ? "fused" : "graph",
                            whole / 1e6, segmented / 1e6, 100.0 * segmented / whole));
        CHECK(segmented * 100 < whole * 15);
    }
}

TEST_CASE("keep_freed_memory: steps that free and allocate a 64 MiB block again are served from the heap, which stops growing") {
    // Above 32 MiB glibc maps every block afresh (16,384 zeroed pages for 64 MiB) unless it maps
    // nothing. What the allocator did is asserted from its own counters; the page faults are shown
    // only, since how a kernel or a sandbox counts them is not ours to assert. A small block that
    // outlives the first step (as a lazily built table does; doctest's own did on one machine) cuts
    // the freed space, so the heap may grow once; after that, what a step frees serves the next.
    REQUIRE(xgrad::keep_freed_memory());
    const std::size_t block = std::size_t{64} << 20;
    std::unique_ptr<char[]> outlives_first_step;
    std::vector<std::size_t> heap_sizes;
    long faults = 0;
    // Steps until the heap's size stayed the same over three steps, at most 16.
    auto settled = [&] { return heap_sizes.size() >= 3 && heap_sizes.end()[-1] == heap_sizes.end()[-3] && heap_sizes.end()[-2] == heap_sizes.end()[-3]; };
    for (int step = 0; step < 16 && !settled(); ++step) {
        rusage before{}, after{};
        getrusage(RUSAGE_SELF, &before);
        {
            xgrad::Tensor<float> t = xgrad::Tensor<float>::from_shape({block / sizeof(float)});
            std::vector<std::unique_ptr<char[]>> step_small_blocks;
            for (int i = 0; i < 16; ++i) step_small_blocks.emplace_back(new char[96 + 32 * i]);
            t.fill(1.0f);
            const struct mallinfo2 live = mallinfo2();
            CHECK(live.hblkhd < block);  // not mapped on its own
            heap_sizes.push_back(live.arena);
        }
        getrusage(RUSAGE_SELF, &after);
        faults = after.ru_minflt - before.ru_minflt;
        CHECK(mallinfo2().fordblks >= block);  // freed into the heap, not trimmed from its top
        if (step == 0) outlives_first_step.reset(new char[96]);
    }
    MESSAGE(fmt::format("heap size at each step's 64 MiB block (MiB): {}; page faults in the last step: {}",
                        fmt::join(heap_sizes | std::views::transform([](std::size_t b) { return b >> 20; }), ", "), faults));
    CHECK(settled());
    // Growing once or twice is the small blocks cutting the freed space; a heap that grew by the
    // block at every step would be back to mapping each one afresh.
    CHECK(heap_sizes.back() < heap_sizes.front() + 2 * block);
}
