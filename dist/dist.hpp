/// @file
/// Data-parallel training over MPI (an optional component: link xgrad::dist; the core library never
/// depends on MPI). What PyTorch's DistributedDataParallel offers a C++ user: every replica starts
/// from rank 0's parameters, and after each backward the gradients are averaged over the ranks with
/// allreduce over flattened buckets, so each rank's optimizer takes the same step.
///
/// @code
///   xgrad::dist::Environment mpi(argc, argv);              // MPI_Init ... MPI_Finalize
///   xgrad::dist::ProcessGroup world;                        // MPI_COMM_WORLD, or a communicator of yours
///   xgrad::dist::DistributedDataParallel<float> ddp(world, model.named_parameters());
///   for (...) { opt.zero_grad(); loss_on_my_share.backward(); ddp.average_gradients(); opt.step(); }
///   double loss = world.average(local_loss);               // for reporting
/// @endcode
///
/// Communication is not overlapped with backward: in backpropagation through time every step adds to
/// the same recurrent weights' gradients, so no bucket of a recurrent layer is final before the
/// backward ends. Only the layers after the recurrence finish early; BENCHMARKS.md measures what
/// their share of the allreduce would save.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../autograd/parameter.hpp"
#include "../tensor/options.hpp"

/// Data-parallel training over MPI, the optional component xgrad::dist (dist/dist.hpp): built only
/// where MPI is found, never a dependency of xgrad::xgrad.
namespace xgrad::dist {

/// True when this process was started by an MPI launcher (mpirun, srun): where Environment is needed.
/// It looks for the launchers' environment variables (Open MPI's, PMIx's, PMI's), without calling MPI.
bool launched_by_mpi();

/// MPI for the lifetime of this object: MPI_Init_thread (MPI_THREAD_FUNNELED: BLAS and OpenMP
/// threads run beside the main thread, which alone calls MPI) unless MPI is already initialised,
/// and MPI_Finalize at the end if it initialised. When it initialises MPI, errors on
/// MPI_COMM_WORLD (and communicators made from it afterwards) are returned, not fatal, so they reach
/// the caller as exceptions; MPI initialised by the caller keeps the caller's error handler.
class Environment {
  public:
    /// Initialises MPI with main's arguments (MPI may remove its own from them). Throws
    /// std::runtime_error when MPI_Init_thread fails or MPI offers no MPI_THREAD_FUNNELED.
    Environment(int& argc, char**& argv);
    /// Finalizes MPI if this object initialised it and nothing finalized it since.
    ~Environment();
    /// One per process.
    ///@{
    Environment(const Environment&) = delete;
    Environment& operator=(const Environment&) = delete;
    ///@}

  private:
    bool initialised_here_ = false;
};

/// Ranks of a communicator (default MPI_COMM_WORLD), and the collectives training needs on scalars.
/// A small handle: copy it freely (the communicator stays the caller's).
/// Every collective must be called by every rank of the communicator, in the same order; an MPI
/// error comes out as std::runtime_error with MPI's own message.
class ProcessGroup {
  public:
    /// Reads this process's rank and the size of `comm`, which must be valid for the handle's lifetime.
    explicit ProcessGroup(MPI_Comm comm = MPI_COMM_WORLD);
    /// This process's rank, 0 to size() - 1.
    int rank() const { return rank_; }
    /// Number of ranks in the communicator.
    int size() const { return size_; }
    /// The communicator, for MPI calls of your own.
    MPI_Comm comm() const { return comm_; }
    /// Waits until every rank has reached it.
    void barrier() const;
    /// `value` summed over the ranks, on every rank (allreduce).
    double sum(double value) const;
    /// Sums each element over the ranks, in one allreduce (several scalars for the price of one).
    ///@{
    void sum_in_place(std::span<double> values) const;
    void sum_in_place(std::span<float> values) const;
    ///@}
    /// Every rank takes `root`'s values (as many on every rank).
    ///@{
    void broadcast(std::span<double> values, int root = 0) const;
    void broadcast(std::span<float> values, int root = 0) const;
    ///@}
    /// `value` averaged over the ranks, on every rank.
    double average(double value) const { return sum(value) / size_; }
    /// Every rank's string, in rank order (allgather).
    std::vector<std::string> all_gather(const std::string& text) const;
    /// Every rank's values, concatenated in rank order; every rank gives as many.
    std::vector<float> all_gather(std::span<const float> values) const;
    /// A check every rank runs: `error` is empty where it passed. Returns, on every rank, the lowest
    /// failing rank and its message (rank -1 when all passed), so all ranks can stop together and one
    /// can print.
    std::pair<int, std::string> first_failure(const std::string& error) const;
    /// Runs fn; if it throws on this rank, prints "<program>: rank <r>: <what>" once to stderr and
    /// aborts every rank (MPI_Abort), so a failure can never leave the others waiting in a collective.
    /// Returns fn's result.
    int run_or_abort(const std::string& program, const std::function<int()>& fn) const;
    /// Ends this process when one collective of this group (or of a DistributedDataParallel over
    /// it) has waited longer than `seconds` for the other ranks: it prints
    /// "<program>: rank <r>: <collective> waited <s> s for the other ranks ..." and exits with status
    /// 1, and mpirun then ends the job, as torch.distributed's timeout does. Without it a rank that
    /// is stopped (SIGSTOP), stuck or unreachable leaves the others waiting (spinning) for ever.
    /// 0 turns the watch off. Every copy of this handle, made before or after, shares the one watch.
    /// Throws std::invalid_argument for a negative or non-finite `seconds`, or one above max_timeout.
    void set_timeout(double seconds, const std::string& program);
    /// The longest timeout set_timeout takes, in seconds (about 31 years).
    static constexpr double max_timeout = 1e9;

  private:
    class Watchdog;
    // Marks a collective as waiting, for the watchdog, for its lifetime.
    class Waiting;
    Waiting waiting(const char* collective) const;
    MPI_Comm comm_;
    int rank_ = 0, size_ = 1;
    std::shared_ptr<Watchdog> watchdog_;
};

/// How DistributedDataParallel groups its communication; an option is a setter and a getter (XGRAD_OPTION).
struct DistributedOptions {
    /// Bytes of gradients per allreduce, as DDP's bucket_cap_mb.
    XGRAD_OPTION(std::size_t, bucket_bytes) = std::size_t{25} << 20;
};

/// Gradient averaging over the ranks for a model's parameters, as PyTorch's
/// DistributedDataParallel: call average_gradients() after each backward and before the
/// optimizer's step. Every rank must build it with the same parameters (names and shapes).
template <class T>
class DistributedDataParallel {
  public:
    /// Checks that every rank has the same parameter names and shapes (one std::invalid_argument,
    /// naming the first rank and parameter that differ, on every rank), then copies rank 0's values
    /// to every rank.
    /// A zero bucket_bytes throws std::invalid_argument.
    DistributedDataParallel(const ProcessGroup& group, std::vector<std::pair<std::string, Parameter<T>>> parameters,
                            DistributedOptions options = {});
    /// Replaces each gradient with its mean over the ranks: one allreduce per bucket of ~bucket_bytes.
    /// Throws ShapeError, before any communication, for a gradient whose shape is not its value's
    /// (under run_or_abort that rank then ends the job).
    void average_gradients();
    /// Every rank takes rank 0's parameter values.
    void broadcast_parameters();
    /// Number of buckets the parameters were split into (one allreduce each).
    std::size_t bucket_count() const { return buckets_.size(); }
    /// Wall seconds of the last average_gradients (its allreduces and copies).
    double last_allreduce_seconds() const { return last_seconds_; }

  private:
    struct Bucket {
        std::size_t first, last;  // parameters [first, last)
        std::size_t elements;
    };
    ProcessGroup group_;
    std::vector<std::pair<std::string, Parameter<T>>> parameters_;
    std::vector<Bucket> buckets_;
    std::vector<T> flat_;  // one bucket's gradients, flattened
    double last_seconds_ = 0;
};

extern template class DistributedDataParallel<float>;
extern template class DistributedDataParallel<double>;

}  // namespace xgrad::dist
