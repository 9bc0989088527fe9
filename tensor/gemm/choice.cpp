// The choice of provider per shape: candidates timed on scratch matrices, once per process, shape
// and thread count; the pin; and the record of choices a checkpoint keeps for an exact resume.
#include "choice.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <emmintrin.h>  // _mm_clflush, _mm_mfence
#include <fmt/format.h>
#include <omp.h>

#include "../linalg.hpp"

namespace xgrad::blas {

namespace {

template <class T>
std::vector<const Provider<T>*> providers() {
    // In order of preference: a later one must be clearly faster to be chosen (clearly_faster). The
    // panel kernel (products against a B laid out once only) first: its times were the steadiest, the
    // median of the step's shapes within 5% of its best where oneDNN's sgemm's was up to 50% above.
    std::vector<const Provider<T>*> all;
    if constexpr (std::is_same_v<T, float>) all = {panels<T>(), onednn_sgemm(), openblas<T>(), onednn_blocked(), small_rows<T>()};
    else all = {panels<T>(), openblas<T>(), small_rows<T>()};
    std::erase(all, nullptr);
    return all;
}

// A later candidate replaces an earlier one when it is at least this much faster: timings closer
// than that are noise, and a stable choice gives the same bits from run to run.
constexpr double clearly_faster = 0.95;

// A product beyond this many multiply-adds (a few ms on one core), or whose scratch copies would take
// more than this many bytes, is timed on a slice of its rows or columns (timed_slice): the byte cap
// keeps the timing out of a model's memory budget. Products against a B laid out once get a larger
// cap, held only while they are timed: how fast they run depends on the whole weight (its size
// against the caches), and a slice misled: the LSTM step's 64 x 2048 x 512 timed on 128 of its 512
// columns chose oneDNN's blocked matmul, which then ran the whole well below the panel kernel
// (measured in commit cc63386).
constexpr std::size_t timed_up_to = std::size_t{1} << 28;
constexpr std::size_t scratch_bytes_up_to = std::size_t{8} << 20, packed_scratch_bytes_up_to = std::size_t{48} << 20;

// Measuring all candidates of one shape takes about this long once each has been run once, three
// rounds at least; a candidate this many times slower than the fastest after a round is not run again.
constexpr double budget_seconds = 0.02, far_behind = 3.0;
// What a recurrence's step writes between two of its products, about: more than a core's L2.
constexpr std::size_t other_work_bytes = std::size_t{2} << 20;

using Key = std::tuple<std::size_t, std::size_t, std::size_t, bool, bool, bool, int>;  // + the thread count

Key key_of(const Shape& s, int threads) { return {s.m, s.n, s.k, s.trans_a, s.trans_b, s.packed, threads}; }

struct Pin {
    std::string name;  // empty: measured
};

std::vector<std::string> all_names() {
    std::vector<std::string> names;
    for (const auto* p : providers<float>()) names.emplace_back(p->name());
    for (const auto* p : providers<double>())
        if (std::find(names.begin(), names.end(), p->name()) == names.end()) names.emplace_back(p->name());
    return names;
}

std::string checked_name(const std::string& name, const char* who) {
    if (name.empty() || name == "auto") return "";
    const auto names = all_names();
    if (std::find(names.begin(), names.end(), name) == names.end()) {
        throw std::invalid_argument(fmt::format("{}: no GEMM provider '{}' in this build (auto, {})", who, name, fmt::join(names, ", ")));
    }
    return name;
}

std::mutex& state_mutex() {
    static std::mutex mutex;
    return mutex;
}

// The pin, from XGRAD_GEMM_PROVIDER the first time it is read (a bad name throws then, and again on
// the next use), or from set_gemm_provider.
std::string& pinned_locked() {
    static std::string pinned = [] {
        const char* env = std::getenv("XGRAD_GEMM_PROVIDER");
        return env ? checked_name(env, "XGRAD_GEMM_PROVIDER") : std::string();
    }();
    return pinned;
}

template <class T>
struct Chosen {
    Choice<T> choice;
    std::string timings;  // what was measured, for gemm_choices()
};

template <class T>
std::map<Key, Chosen<T>>& cache_locked() {
    static std::map<Key, Chosen<T>> cache;
    return cache;
}

// What may run a shape, in order of preference. Pinned: the pinned provider alone, on all threads, or
// where it cannot run the shape the first provider that can: nothing timed, so the same bits on
// every run.
template <class T>
std::vector<Choice<T>> candidates(const Shape& shape, const std::string& pinned) {
    const int all_threads = std::max(1, omp_get_max_threads());
    std::vector<Choice<T>> out;
    for (const Provider<T>* p : providers<T>()) {
        if (!p->runs(shape)) continue;
        if (!pinned.empty()) {
            if (p->name() == pinned) return {{p, all_threads}};
            if (out.empty()) out.push_back({p, all_threads});
            continue;
        }
        out.push_back({p, all_threads});
        if (p->sets_threads() && all_threads > 1) out.push_back({p, 1});
    }
    if (!pinned.empty()) out.resize(std::min<std::size_t>(out.size(), 1));
    return out;
}

// Scratch operands of a shape, filled with small positive values: no denormals, and no overflow while
// the timed products against a laid-out B add into C (each call adds at most k / 2 to a value).
template <class T>
struct Scratch {
    std::vector<T> a, b, c;
    explicit Scratch(const Shape& s) : a(std::max<std::size_t>(1, s.m * s.k)), b(std::max<std::size_t>(1, s.k * s.n)), c(std::max<std::size_t>(1, s.m * s.n)) {
        for (std::size_t i = 0; i < a.size(); ++i) a[i] = T(1) / T(1 + i % 7);
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = T(1) / T(2 + i % 5);
    }
};

// One way to run the shape on the scratch operands, ready to time.
template <class T>
struct Runner {
    Choice<T> choice;
    std::unique_ptr<Packed<T>> packed;  // for packed shapes
    double best = std::numeric_limits<double>::infinity();
    std::vector<double> times;  // of the rounds it ran
    // The median of its rounds: what a provider typically takes, not its luckiest call. Best times
    // favoured a provider whose calls vary (oneDNN's sgemm on a step's 64 x 512 x 1536: median 50% above
    // its best).
    double typical() const {
        std::vector<double> sorted = times;
        std::sort(sorted.begin(), sorted.end());
        return sorted.empty() ? best : sorted[sorted.size() / 2];  // of two, the slower
    }
};

template <class T>
void run(const Shape& s, Scratch<T>& x, const Runner<T>& r) {
    if (r.packed) {
        r.packed->run(x.a.data(), x.c.data(), true);  // as the forward step adds into its gates (see measure)
        return;
    }
    Product<T> p;
    p.trans_a = s.trans_a;
    p.trans_b = s.trans_b;
    p.m = s.m;
    p.n = s.n;
    p.k = s.k;
    p.a = x.a.data();
    p.lda = std::max<std::size_t>(1, s.trans_a ? s.m : s.k);
    p.b = x.b.data();
    p.ldb = std::max<std::size_t>(1, s.trans_b ? s.k : s.n);
    p.c = x.c.data();
    p.ldc = std::max<std::size_t>(1, s.n);
    r.choice.provider->multiply(p, r.choice.threads);
}

template <class T>
double seconds_of(const Shape& s, Scratch<T>& x, const Runner<T>& r) {
    const auto start = std::chrono::steady_clock::now();
    run(s, x, r);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// "onednn/1": oneDNN on one thread where more are set.
std::string label(const std::string& name, int threads, int all_threads) {
    return threads == 1 && all_threads > 1 ? name + "/1" : name;
}

// The shape to time for a large one, halved until it fits the caps. First a dimension that leaves
// every row stride as in the real product: A's rows when A is not transposed (down to 64), the depth
// of Aᵀ·B, a weight's gradient (down to 256; the kernels block on k by less). Cut across the columns,
// a 352 x 2048 x 1024 Aᵀ·B timed oneDNN's sgemm and OpenBLAS alike, while whole (and cut in depth)
// oneDNN's was the slower (measured in commit eaed0c0). Then rows or columns, whichever are more, down to 64.
// Nothing when even that does not fit.
std::optional<Shape> timed_slice(Shape s, std::size_t candidates, std::size_t bytes_per_value) {
    const auto fits = [&] {
        // A, C and a B for each candidate (a packed one lays out its own copy).
        const std::size_t values = s.m * s.k + s.m * s.n + s.k * s.n * (1 + (s.packed ? candidates : 0));
        return s.m * s.n * s.k <= timed_up_to &&
               values * bytes_per_value <= (s.packed ? packed_scratch_bytes_up_to : scratch_bytes_up_to);
    };
    while (!fits()) {
        if (!s.trans_a && s.m > 64) s.m = (s.m + 1) / 2;
        else if (s.trans_a && !s.trans_b && s.k > 256) s.k = (s.k + 1) / 2;
        else if (s.m >= s.n && s.m > 64) s.m = (s.m + 1) / 2;
        else if (s.n > 64) s.n = (s.n + 1) / 2;
        else return std::nullopt;
    }
    return s;
}

template <class T>
Chosen<T> measure(const Shape& shape, const std::vector<Choice<T>>& offered) {
    if (offered.size() == 1) return {offered.front(), "not timed"};
    const std::optional<Shape> slice = timed_slice(shape, offered.size(), sizeof(T));
    if (!slice) return {offered.front(), "not timed: too large"};
    const Shape& s = *slice;
    Scratch<T> x(s);
    std::vector<Runner<T>> runners;
    double first_round = 0;
    for (const Choice<T>& c : offered) {
        Runner<T> r{c, nullptr, std::numeric_limits<double>::infinity(), {}};
        if (s.packed) {
            r.packed = c.provider->pack(s.m, s.n, s.k, x.b.data(), s.trans_b, std::max<std::size_t>(1, s.k),
                                        std::max<std::size_t>(1, s.n), c.threads);
            if (!r.packed) continue;  // declined this shape
        }
        first_round += seconds_of(s, x, r);  // warms caches and JIT kernels; not counted
        runners.push_back(std::move(r));
    }
    // A product against a B laid out once is a recurrence's step, and between two steps the cell's rows
    // run: each timed call starts after other work has gone through the caches, as there. The step's
    // forward product adds into its input projection, written long before and out of the caches: C is
    // flushed from them too. Timed on a C in cache, oneDNN's sgemm won the LSTM L step's 64 x 512 x 2048
    // (1.89 against the panel kernel's 1.99 ms), and in the step took 3.1-3.35 ms a call against the
    // panel kernel's 1.65-2.07 (each pinned, three processes); timed on a flushed C it came out 2-9%
    // slower, and the preference (clearly_faster) keeps the panel kernel. The shape does not say where
    // C lives: the GRU's forward product and every backward one write a C the step has in cache, and
    // are timed the same way, a little pessimistically for every candidate.
    std::vector<unsigned char> other_work(s.packed ? other_work_bytes : 0);
    const auto flush_c = [&] {
        if (!s.packed) return;
        // Line by line from the line C starts in (a vector's data is only 16-byte aligned).
        const auto begin = reinterpret_cast<std::uintptr_t>(x.c.data()), end = begin + x.c.size() * sizeof(T);
        for (std::uintptr_t line = begin & ~std::uintptr_t{63}; line < end; line += 64) _mm_clflush(reinterpret_cast<const void*>(line));
        _mm_mfence();
    };
    const int rounds = static_cast<int>(std::clamp(budget_seconds / std::max(first_round, 1e-9), 3.0, 100.0));
    const auto started = std::chrono::steady_clock::now();
    for (int round = 0; round < rounds; ++round) {  // alternated, so that a slow moment hits them all
        double fastest = std::numeric_limits<double>::infinity();
        for (const Runner<T>& r : runners) fastest = std::min(fastest, r.best);
        for (Runner<T>& r : runners) {
            // One far behind after a round drops out (threads beside a busy process can be 10x slower).
            if (r.best > far_behind * fastest) continue;
            // A store to every line, kept by the barrier: a buffer nobody reads may be written by no one.
            for (std::size_t i = 0; i < other_work.size(); i += 64) other_work[i] = static_cast<unsigned char>(round + 1);
            asm volatile("" : : "r"(other_work.data()) : "memory");
            flush_c();
            r.times.push_back(seconds_of(s, x, r));
            r.best = std::min(r.best, r.times.back());
        }
        if (round >= 2 && std::chrono::steady_clock::now() - started > std::chrono::duration<double>(budget_seconds)) break;
    }
    // Among those that ran every round: one dropped after a round has too few times to compare.
    std::size_t most_rounds = 0;
    for (const Runner<T>& r : runners) most_rounds = std::max(most_rounds, r.times.size());
    std::optional<std::size_t> winner;
    for (std::size_t i = 0; i < runners.size(); ++i) {
        if (runners[i].times.size() < most_rounds) continue;
        if (!winner || runners[i].typical() < clearly_faster * runners[*winner].typical()) winner = i;
    }
    std::string timings;
    if (s.m != shape.m || s.n != shape.n || s.k != shape.k) timings = fmt::format("timed at {} x {} x {}: ", s.m, s.k, s.n);
    for (const Runner<T>& r : runners)
        timings += fmt::format("{}{} {:.4f} ms", timings.empty() || timings.back() == ' ' ? "" : ", ", label(std::string(r.choice.provider->name()), r.choice.threads, std::max(1, omp_get_max_threads())),
                               r.typical() * 1e3);
    return {runners[winner.value_or(0)].choice, timings};
}

template <class T>
Choice<T> choose_locked(const Shape& shape) {
    auto& cache = cache_locked<T>();
    const Key key = key_of(shape, std::max(1, omp_get_max_threads()));
    if (auto found = cache.find(key); found != cache.end()) return found->second.choice;
    Chosen<T> chosen = measure<T>(shape, candidates<T>(shape, pinned_locked()));
    return cache.emplace(key, std::move(chosen)).first->second.choice;
}

template <class T>
const Provider<T>* provider_named(const std::string& name) {
    for (const Provider<T>* p : providers<T>())
        if (p->name() == name) return p;
    return nullptr;
}

const char* type_code(float) { return "f"; }
const char* type_code(double) { return "d"; }

template <class T>
void describe_choices(std::string& out, bool saved) {
    for (const auto& [key, chosen] : cache_locked<T>()) {
        const auto& [m, n, k, ta, tb, packed, threads] = key;
        const std::string provider(chosen.choice.provider->name());
        if (saved) {
            out += fmt::format("{}{} {} {} {} {:d} {:d} {:d} {} {} {}", out.empty() ? "" : ";", type_code(T()), m, n, k, ta, tb, packed, threads,
                               provider, chosen.choice.threads);
        } else {
            out += fmt::format("{} {} x {} x {} {}{}{} at {} thread{}: {} ({})\n", sizeof(T) == 4 ? "float" : "double", m, k, n,
                               ta ? "Aᵀ·" : "A·", tb ? "Bᵀ" : "B", packed ? " laid out once" : "", threads, threads == 1 ? "" : "s",
                               label(provider, chosen.choice.threads, threads), chosen.timings);
        }
    }
}

template <class T>
void restore_one(const Key& key, const std::string& name, int threads) {
    const Provider<T>* p = provider_named<T>(name);
    const auto& [m, n, k, ta, tb, packed, all] = key;
    if (!p || !p->runs(Shape{m, n, k, ta, tb, packed}) || threads < 1 || threads > all) return;  // measured again
    cache_locked<T>()[key] = Chosen<T>{{p, threads}, "restored"};
}

}  // namespace

template <class T>
Choice<T> choose(const Shape& shape) {
    const std::lock_guard lock(state_mutex());
    return choose_locked<T>(shape);
}

template <class T>
std::unique_ptr<Packed<T>> pack_chosen(const Shape& shape, const T* b, std::size_t lda, std::size_t ldc) {
    const Choice<T> c = choose<T>(shape);
    if (auto packed = c.provider->pack(shape.m, shape.n, shape.k, b, shape.trans_b, lda, ldc, c.threads)) return packed;
    // Declined with these strides after taking the scratch ones: the panel kernel, which takes any.
    return panels<T>()->pack(shape.m, shape.n, shape.k, b, shape.trans_b, lda, ldc, c.threads);
}

template Choice<float> choose<float>(const Shape&);
template Choice<double> choose<double>(const Shape&);
bool provider_pinned() {
    const std::lock_guard lock(state_mutex());
    return !pinned_locked().empty();
}

template std::unique_ptr<Packed<float>> pack_chosen<float>(const Shape&, const float*, std::size_t, std::size_t);
template std::unique_ptr<Packed<double>> pack_chosen<double>(const Shape&, const double*, std::size_t, std::size_t);

}  // namespace xgrad::blas

namespace xgrad {

void set_gemm_provider(const std::string& name) {
    std::string checked = blas::checked_name(name, "set_gemm_provider");
    const std::lock_guard lock(blas::state_mutex());
    blas::pinned_locked() = std::move(checked);
    blas::cache_locked<float>().clear();
    blas::cache_locked<double>().clear();
}

std::vector<std::string> gemm_providers() { return blas::all_names(); }

std::string gemm_provider() {
    std::string pinned;
    {
        const std::lock_guard lock(blas::state_mutex());
        pinned = blas::pinned_locked();
    }
    std::vector<std::string> described;
    for (const auto* p : blas::providers<float>())
        if (pinned.empty() || p->name() == pinned) described.push_back(p->description());
    if (!pinned.empty()) return fmt::format("pinned to {} (XGRAD_GEMM_PROVIDER or set_gemm_provider)", fmt::join(described, ""));
    return fmt::format("chosen per shape by timing {}", fmt::join(described, ", "));
}

std::string gemm_choices() {
    const std::lock_guard lock(blas::state_mutex());
    std::string out;
    blas::describe_choices<float>(out, false);
    blas::describe_choices<double>(out, false);
    return out;
}

std::string saved_gemm_choices() {
    const std::lock_guard lock(blas::state_mutex());
    std::string out;
    blas::describe_choices<float>(out, true);
    blas::describe_choices<double>(out, true);
    return out;
}

void restore_gemm_choices(const std::string& saved) {
    std::istringstream entries(saved);
    std::string entry;
    std::size_t index = 0;
    const std::lock_guard lock(blas::state_mutex());
    while (std::getline(entries, entry, ';')) {
        std::istringstream fields(entry);
        std::string type, name, rest;
        std::size_t m = 0, n = 0, k = 0;
        int ta = 0, tb = 0, packed = 0, all = 0, threads = 0;
        fields >> type >> m >> n >> k >> ta >> tb >> packed >> all >> name >> threads;
        const bool flags = (ta == 0 || ta == 1) && (tb == 0 || tb == 1) && (packed == 0 || packed == 1);
        if (!fields || (fields >> rest) || !flags || (type != "f" && type != "d")) {
            throw std::invalid_argument(fmt::format("restore_gemm_choices: entry {} ('{}') is not a saved choice", index, entry));
        }
        const blas::Key key{m, n, k, ta == 1, tb == 1, packed == 1, all};
        if (type == "f") blas::restore_one<float>(key, name, threads);
        else blas::restore_one<double>(key, name, threads);
        ++index;
    }
}

}  // namespace xgrad
