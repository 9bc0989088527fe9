// The commands of xgrad-charlm, and what they share: streamed evaluation in bits per character.
#pragma once

#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "corpus.hpp"
#include "memory_estimate.hpp"  // training_memory_bytes, check_memory: in model.hpp before, so includers keep them
#include "model.hpp"

namespace charlm {

struct TrainArgs {
    std::string corpus = "/usr/share/games/fortunes";
    Config config;
    std::optional<std::int64_t> steps;   // total, counting a resumed checkpoint's steps
    std::optional<double> time_limit;    // seconds of this run
    std::int64_t eval_every = 500, save_every = 0;
    std::string out = "charlm.safetensors", resume, metrics;
    int threads = 0;                     // 0: as the environment sets BLAS
    bool detect_anomaly = false;         // check every op's output and every gradient for NaN/Inf
    std::vector<std::string> explicit_flags;  // configuration flags the user gave (checked against --resume)
    bool impl_given = false;                  // --impl may differ on resume: the same numbers either way
    bool checkpoint_activations = false;      // segments of ceil(sqrt(seq)) steps unless config.checkpoint_segment says
    double collective_timeout = 1800;         // under mpirun: seconds one collective may wait (0: for ever)
    static constexpr double max_collective_timeout = 1e9;  // xgrad::dist's limit, also where it is not built
};

struct SampleArgs {
    std::string checkpoint, prime;
    std::size_t length = 500, top_k = 0;
    double temperature = 1.0;
    std::uint64_t seed = 1;
};

struct EvalArgs {
    std::string checkpoint, corpus;
};

struct PlotArgs {
    std::string metrics, out = "curve.svg";
};

// The processes a training run is split over: this process alone (this class), or the ranks of an
// MPI job (MpiRanks, mpi_ranks.hpp). The global --batch is split between them, gradients are
// averaged after each backward, and rank 0 prints, writes the metrics and writes checkpoints.
class Ranks {
  public:
    virtual ~Ranks() = default;
    virtual bool distributed() const { return false; }  // an MPI job, of any size (mpirun -np 1 too)
    virtual int rank() const { return 0; }
    virtual int size() const { return 1; }
    virtual double sum(double value) const { return value; }
    // Sums each element over the ranks in one collective.
    virtual void sum_in_place(std::span<double>) const {}
    // The lowest failing rank and its message, on every rank (-1: none failed).
    virtual std::pair<int, std::string> first_failure(const std::string& error) const { return {error.empty() ? -1 : 0, error}; }
    // Every rank's values, concatenated in rank order (each rank gives as many).
    virtual std::vector<float> all_gather(std::span<const float> mine) const { return {mine.begin(), mine.end()}; }
    // Every rank's text, in rank order.
    virtual std::vector<std::string> all_gather_text(const std::string& mine) const { return {mine}; }
    // Makes every rank's model rank 0's (checking that they match); then average_gradients after
    // each backward replaces every gradient with its mean over the ranks.
    virtual void start(CharLM&) {}
    virtual void average_gradients() {}
    virtual double last_allreduce_seconds() const { return 0; }
};

// An error every rank raises at the same point (a check on values all ranks share): printed once,
// by rank 0, and every rank exits with status 1 (no rank waits for another).
class SameOnEveryRank : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

int train(const TrainArgs& args, Ranks& ranks);
inline int train(const TrainArgs& args) {
    Ranks alone;
    return train(args, alone);
}
int sample(const SampleArgs& args);
int evaluate(const EvalArgs& args);
// Draws train and validation bits per character from a --metrics CSV against steps and wall time,
// with gnuplot, into an .svg or .png (written whole or not at all).
int plot(const PlotArgs& args);

// Bits per character of `ids` under the model, streamed in up to 64 contiguous streams with
// the state carried through each; every character but each stream's first is predicted. Over
// several ranks each runs a share of the streams and the result is their sum's.
double bits_per_char(CharLM& model, const std::vector<std::int64_t>& ids, const Ranks& ranks = Ranks());

// The next character's index, drawn from softmax(logits / temperature) restricted to the top_k
// most likely (0: all). Throws InputError for a temperature that is not positive and finite, or
// for non-finite logits, rather than drawing from NaN probabilities.
std::size_t draw_next(std::span<const float> logits, double temperature, std::size_t top_k, xgrad::Generator& gen);

std::vector<std::int64_t> encode(const Vocabulary& vocabulary, std::u32string_view text);

}  // namespace charlm
