// What every example program does when a run cannot go on, in one place: a training step whose
// loss or gradient norm is not finite stops training before the update; a run estimated to need
// more memory than the machine has is refused before it starts; and any error, std::bad_alloc
// included, ends the program with one line and exit status 1 instead of an abort.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <unistd.h>

namespace examples {

// "step N: the loss is nan", or "step N: the gradient norm is inf (loss 2.3)": the start of the line
// a program prints when training diverges (xgrad-charlm adds what its checkpoint keeps).
// (NaN is printed "nan" whatever its sign bit.)
inline std::string not_finite_step(std::size_t step, double loss, double norm) {
    const auto text = [](double x) { return std::isnan(x) ? std::string("nan") : fmt::format("{}", x); };
    if (!std::isfinite(loss)) return fmt::format("step {}: the loss is {}", step, text(loss));
    return fmt::format("step {}: the gradient norm is {} (loss {})", step, text(norm), loss);
}

// Throws std::runtime_error, "step N: the loss is nan; training stopped before the update (lower
// the learning rate, --lr)", unless the step's loss and gradient norm are finite: an update from
// them would put NaN into every weight. Pass norm 0 where it is not measured.
inline void stop_unless_finite(std::size_t step, double loss, double norm = 0) {
    if (std::isfinite(loss) && std::isfinite(norm)) return;
    throw std::runtime_error(fmt::format("{}; training stopped before the update (lower the learning rate, --lr)",
                                         not_finite_step(step, loss, norm)));
}

// The share of the machine's memory a run may plan to use.
constexpr double memory_share = 0.8;

// The machine's memory in bytes (physical pages times the page size).
inline double physical_memory_bytes() {
    return static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// Nothing when `bytes` fits in memory_share of the machine's memory; otherwise the line that says
// "<what> would need up to X GB, more than the limit of Y GB (80% of this machine's Z GB; lower <lower>)".
inline std::optional<std::string> beyond_memory(std::string_view what, double bytes, std::string_view lower) {
    const double available = physical_memory_bytes(), limit = memory_share * available;
    if (bytes <= limit) return std::nullopt;
    return fmt::format("{} would need up to {:.2f} GB, more than the limit of {:.2f} GB ({:.0f}% of this machine's {:.2f} GB; lower {})",
                       what, bytes / 1e9, limit / 1e9, 100 * memory_share, available / 1e9, lower);
}

// Throws std::runtime_error with beyond_memory's line when `bytes` does not fit.
inline void check_memory(std::string_view what, double bytes, std::string_view lower) {
    if (auto why = beyond_memory(what, bytes, lower)) throw std::runtime_error(*why);
}

// A rough upper bound on the floats a recurrent layer keeps per direction for `positions` (time
// steps times sequences) of hidden size H with `gates` gate blocks. For training, the graph path's
// activations and their gradients, (7 + 3 gates) H each, the coefficient xgrad-charlm measured (the
// fused path keeps less); for a forward pass alone (`backward` false), the gates and the states, (2 + gates) H.
inline double recurrent_floats(double positions, std::size_t hidden, std::size_t gates, bool backward = true) {
    const double g = static_cast<double>(gates);
    return positions * (backward ? 7.0 + 3.0 * g : 2.0 + g) * static_cast<double>(hidden);
}

// Bytes of every parameter held eight times over (value, gradient, Adam's two moments, and a step's
// copies of value and gradient) plus `activation_floats`: the estimate check_memory compares.
// A double, as an estimate may be far beyond any integer type (a cast of it would be undefined).
inline double training_bytes(double parameters, double activation_floats) {
    return 4.0 * (8.0 * parameters + activation_floats);
}

// What a program says for std::bad_alloc, which names nothing: "out of memory (an allocation
// failed); lower <sizes>", or without the advice where no flag sets a size (`sizes` empty).
inline std::string out_of_memory(std::string_view sizes) {
    return fmt::format("out of memory (an allocation failed){}", sizes.empty() ? "" : fmt::format("; lower {}", sizes));
}

// Runs a program's body and returns its exit status. Whatever it throws ends the program with one
// line on stderr, "<program>: <what>", and `failure_status`; std::bad_alloc becomes
// "<program>: " + out_of_memory(sizes). Nothing escapes to abort.
template <class Body>
int run_guarded(std::string_view program, std::string_view sizes, Body&& body, int failure_status = 1) {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        std::fflush(stdout);
        fmt::print(stderr, "{}: {}\n", program, out_of_memory(sizes));
    } catch (const std::exception& e) {
        std::fflush(stdout);
        fmt::print(stderr, "{}: {}\n", program, e.what());
    }
    return failure_status;
}

}  // namespace examples
