#include "dist.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include <fmt/format.h>

#include "../tensor/tensor.hpp"

namespace xgrad::dist {

namespace {
// MPI calls return their error (Environment sets MPI_ERRORS_RETURN): raise it with MPI's own words.
void check(int code, const char* call) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw std::runtime_error(fmt::format("{}: {}", call, std::string(text, static_cast<std::size_t>(length))));
}

int as_count(std::size_t n, const char* what) {
    if (n > static_cast<std::size_t>(INT_MAX)) throw std::length_error(fmt::format("{}: {} elements exceed MPI's int count", what, n));
    return static_cast<int>(n);
}

// The float and double collectives, one body each.
template <class T>
MPI_Datatype datatype() {
    return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

template <class T>
void sum_over(std::span<T> values, MPI_Comm comm) {
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), as_count(values.size(), "sum_in_place"), datatype<T>(), MPI_SUM, comm),
          "MPI_Allreduce");
}

template <class T>
void broadcast_from(std::span<T> values, int root, MPI_Comm comm) {
    check(MPI_Bcast(values.data(), as_count(values.size(), "broadcast"), datatype<T>(), root, comm), "MPI_Bcast");
}
}  // namespace

bool launched_by_mpi() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
        if (std::getenv(name) != nullptr) return true;
    }
    return false;
}

Environment::Environment(int& argc, char**& argv) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) return;
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) throw std::runtime_error("MPI_Init_thread failed");
    initialised_here_ = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();  // the destructor of an object whose constructor throws never runs
        initialised_here_ = false;
        throw std::runtime_error("MPI offers no MPI_THREAD_FUNNELED, which threaded BLAS beside MPI calls needs");
    }
}

Environment::~Environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (initialised_here_ && !finalized) MPI_Finalize();
}

// The collective watch of a group and all its copies: when a collective began, and a thread (started
// by the first positive timeout) that ends the process when one has waited too long. Collectives run
// on one thread only (MPI_THREAD_FUNNELED), so one "waiting since" is enough.
class ProcessGroup::Watchdog {
  public:
    explicit Watchdog(int rank) : rank_(rank) {}
    ~Watchdog() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        woken_.notify_one();
        if (thread_.joinable()) thread_.join();
    }
    void configure(double seconds, const std::string& program) {
        std::lock_guard lock(mutex_);
        seconds_ = seconds;
        program_ = program;
        if (seconds_ > 0 && !thread_.joinable()) thread_ = std::thread([this] { watch(); });
        woken_.notify_one();
    }
    void enter(const char* collective) {
        std::lock_guard lock(mutex_);
        collective_ = collective;
        since_ = Clock::now();
        woken_.notify_one();
    }
    void leave() {
        std::lock_guard lock(mutex_);
        since_.reset();
    }

  private:
    using Clock = std::chrono::steady_clock;
    void watch() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            if (!since_ || seconds_ <= 0) {
                woken_.wait(lock);
                continue;
            }
            const Clock::time_point since = *since_;
            const double seconds = seconds_;
            const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
            if (woken_.wait_until(lock, since + limit, [&] { return stopping_ || since_ != since || seconds_ != seconds; })) continue;
            // MPI_Abort may not be called from this thread (MPI_THREAD_FUNNELED): the process ends,
            // and mpirun ends the ranks still waiting.
            std::fprintf(stderr, "%s: rank %d: %s waited %g s for the other ranks (one of them stopped, stuck or gone?); ending the job\n",
                         program_.c_str(), rank_, collective_, seconds_);
            std::fflush(stderr);
            std::_Exit(1);
        }
    }
    const int rank_;
    std::mutex mutex_;
    std::condition_variable woken_;
    double seconds_ = 0;
    std::string program_;
    std::optional<Clock::time_point> since_;
    const char* collective_ = "";
    bool stopping_ = false;
    std::thread thread_;
};

class ProcessGroup::Waiting {
  public:
    Waiting(Watchdog& watchdog, const char* collective) : watchdog_(watchdog) { watchdog_.enter(collective); }
    ~Waiting() { watchdog_.leave(); }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;

  private:
    Watchdog& watchdog_;
};

ProcessGroup::Waiting ProcessGroup::waiting(const char* collective) const { return Waiting(*watchdog_, collective); }

void ProcessGroup::set_timeout(double seconds, const std::string& program) {
    // Past ~9.2e9 s a steady_clock duration overflows; 1e9 s is 31 years.
    if (!std::isfinite(seconds) || seconds < 0 || seconds > max_timeout) {
        throw std::invalid_argument(fmt::format("ProcessGroup::set_timeout: {} seconds (0 for none, at most {:g})", seconds, max_timeout));
    }
    watchdog_->configure(seconds, program);
}

ProcessGroup::ProcessGroup(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    watchdog_ = std::make_shared<Watchdog>(rank_);
}

void ProcessGroup::barrier() const {
    const Waiting w = waiting("MPI_Barrier");
    check(MPI_Barrier(comm_), "MPI_Barrier");
}

double ProcessGroup::sum(double value) const {
    sum_in_place(std::span<double>(&value, 1));
    return value;
}

void ProcessGroup::sum_in_place(std::span<double> values) const {
    const Waiting w = waiting("MPI_Allreduce");
    sum_over(values, comm_);
}

void ProcessGroup::sum_in_place(std::span<float> values) const {
    const Waiting w = waiting("MPI_Allreduce");
    sum_over(values, comm_);
}

void ProcessGroup::broadcast(std::span<double> values, int root) const {
    const Waiting w = waiting("MPI_Bcast");
    broadcast_from(values, root, comm_);
}

void ProcessGroup::broadcast(std::span<float> values, int root) const {
    const Waiting w = waiting("MPI_Bcast");
    broadcast_from(values, root, comm_);
}

std::vector<float> ProcessGroup::all_gather(std::span<const float> values) const {
    const int count = as_count(values.size(), "all_gather");
    std::vector<float> all(values.size() * static_cast<std::size_t>(size_));
    const Waiting w = waiting("MPI_Allgather");
    check(MPI_Allgather(values.data(), count, MPI_FLOAT, all.data(), count, MPI_FLOAT, comm_), "MPI_Allgather");
    return all;
}

std::vector<std::string> ProcessGroup::all_gather(const std::string& text) const {
    const int length = as_count(text.size(), "all_gather");
    std::vector<int> lengths(static_cast<std::size_t>(size_)), offsets(static_cast<std::size_t>(size_), 0);
    const Waiting w = waiting("MPI_Allgather");
    check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm_), "MPI_Allgather");
    std::size_t total = 0;
    for (int r = 0; r < size_; ++r) {
        offsets[static_cast<std::size_t>(r)] = as_count(total, "all_gather");
        total += static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)]);
    }
    std::string all(total, '\0');
    check(MPI_Allgatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, comm_),
          "MPI_Allgatherv");
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r) {
        out.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]),
                                 static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)])));
    }
    return out;
}

std::pair<int, std::string> ProcessGroup::first_failure(const std::string& error) const {
    const int mine = error.empty() ? INT_MAX : rank_;
    int first = INT_MAX;
    const Waiting w = waiting("MPI_Allreduce");
    check(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
    if (first == INT_MAX) return {-1, ""};
    int length = first == rank_ ? as_count(error.size(), "first_failure") : 0;
    check(MPI_Bcast(&length, 1, MPI_INT, first, comm_), "MPI_Bcast");
    std::string message = first == rank_ ? error : std::string(static_cast<std::size_t>(length), '\0');
    check(MPI_Bcast(message.data(), length, MPI_CHAR, first, comm_), "MPI_Bcast");
    return {first, message};
}

int ProcessGroup::run_or_abort(const std::string& program, const std::function<int()>& fn) const {
    try {
        return fn();
    } catch (const std::exception& e) {
        fmt::print(stderr, "{}: rank {}: {}\n", program, rank_, e.what());
        std::fflush(stderr);
        MPI_Abort(comm_, 1);  // ends every rank: none is left waiting in a collective
        return 1;
    }
}

template <class T>
DistributedDataParallel<T>::DistributedDataParallel(const ProcessGroup& group,
                                                    std::vector<std::pair<std::string, Parameter<T>>> parameters,
                                                    DistributedOptions options)
    : group_(group), parameters_(std::move(parameters)) {
    if (options.bucket_bytes() == 0) throw std::invalid_argument("DistributedDataParallel: bucket_bytes must be positive");
    // Names and shapes, one line per parameter; every rank compares every rank's with rank 0's, so
    // all of them raise the same error (or none does).
    std::string mine;
    for (const auto& [name, p] : parameters_) mine += fmt::format("{} {}\n", name, shape_str(p.shape()));
    const std::vector<std::string> all = group_.all_gather(mine);
    auto lines = [](const std::string& text) {
        std::vector<std::string> out;
        for (std::size_t at = 0; at < text.size();) {
            std::size_t end = text.find('\n', at);
            if (end == std::string::npos) end = text.size();
            out.push_back(text.substr(at, end - at));
            at = end + 1;
        }
        return out;
    };
    const std::vector<std::string> reference = lines(all[0]);
    for (std::size_t r = 1; r < all.size(); ++r) {
        const std::vector<std::string> theirs = lines(all[r]);
        for (std::size_t i = 0; i < std::max(reference.size(), theirs.size()); ++i) {
            const std::string a = i < reference.size() ? reference[i] : "nothing", b = i < theirs.size() ? theirs[i] : "nothing";
            if (a != b) {
                throw std::invalid_argument(fmt::format("DistributedDataParallel: parameter {} is '{}' on rank {} but '{}' on "
                                                        "rank 0: every rank must build the same model", i, b, r, a));
            }
        }
    }
    const std::size_t per_bucket = std::max<std::size_t>(1, options.bucket_bytes() / sizeof(T));
    std::size_t largest = 0;
    for (std::size_t i = 0; i < parameters_.size();) {
        Bucket b{i, i, 0};
        while (b.last < parameters_.size() && (b.elements == 0 || b.elements + parameters_[b.last].second.value().size() <= per_bucket)) {
            b.elements += parameters_[b.last].second.value().size();
            ++b.last;
        }
        largest = std::max(largest, b.elements);
        buckets_.push_back(b);
        i = b.last;
    }
    flat_.resize(largest);
    broadcast_parameters();
}

template <class T>
void DistributedDataParallel<T>::broadcast_parameters() {
    for (auto& [name, p] : parameters_) group_.broadcast(std::span<T>(p.value().data(), p.value().size()));
}

template <class T>
void DistributedDataParallel<T>::average_gradients() {
    const double start = MPI_Wtime();
    for (const auto& [name, p] : parameters_) {  // all checked before any communication
        if (shape_of(p.grad()) != p.shape()) {
            throw ShapeError(fmt::format("DistributedDataParallel: '{}' has gradient {} for value {}", name,
                                         shape_str(shape_of(p.grad())), shape_str(p.shape())));
        }
    }
    const T scale = T(1) / static_cast<T>(group_.size());
    for (const Bucket& b : buckets_) {
        T* at = flat_.data();
        for (std::size_t i = b.first; i < b.last; ++i) {
            const Tensor<T>& g = parameters_[i].second.grad();
            at = std::copy(g.data(), g.data() + g.size(), at);
        }
        group_.sum_in_place(std::span<T>(flat_.data(), b.elements));
        const T* from = flat_.data();
        for (std::size_t i = b.first; i < b.last; ++i) {
            Tensor<T>& g = parameters_[i].second.grad();
            for (std::size_t k = 0; k < g.size(); ++k) g.data()[k] = from[k] * scale;
            from += g.size();
        }
    }
    last_seconds_ = MPI_Wtime() - start;
}

template class DistributedDataParallel<float>;
template class DistributedDataParallel<double>;

}  // namespace xgrad::dist
