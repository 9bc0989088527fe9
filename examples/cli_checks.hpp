// Command-line handling shared by the example programs (CLI11): a check that refuses NaN and ±Inf,
// parsing that reports any bad flag in one line with exit status 1, and the --require-loss-below
// check the test suite runs the examples' short mode with.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace examples {

// CLI11's PositiveNumber and Range let NaN through (every comparison with it is false), and Inf
// passes PositiveNumber: every floating-point flag goes through this check first.
inline CLI::Validator finite_number() {
    return CLI::Validator(
        [](std::string& text) -> std::string {
            double value = 0;
            if (!CLI::detail::lexical_cast(text, value)) return "'" + text + "' is not a number";
            return std::isfinite(value) ? std::string() : "'" + text + "' is not a finite number";
        },
        "FINITE");
}

// Parses the command line. Returns the exit status when the program should stop now: 0 after
// --help, 1 after printing "<program>: <what was wrong>" (CLI11 alone would print two lines and exit
// with its own codes); nothing when the program should go on. With `report` false (the other ranks
// of an MPI job) nothing is printed: one rank says it.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, std::string_view program, bool report = true) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help
        return report ? app.exit(e) : 0;
    } catch (const CLI::ParseError& e) {
        if (report) fmt::print(stderr, "{}: {}\n", program, e.what());
        return 1;
    }
    return std::nullopt;
}

// The mean of the last (up to) 50 training losses.
inline double recent_loss(const std::vector<double>& losses) {
    const std::size_t n = std::min<std::size_t>(50, losses.size());
    double sum = 0;
    for (std::size_t i = losses.size() - n; i < losses.size(); ++i) sum += losses[i];
    return n == 0 ? std::nan("") : sum / static_cast<double>(n);
}

// The exit status of a run asked to reach a loss (--require-loss-below; 0 asks nothing): 1, with
// one line saying so, unless recent_loss is below it.
inline int require_loss_below(std::string_view program, const std::vector<double>& losses, double limit) {
    if (limit <= 0 || recent_loss(losses) < limit) return 0;
    fmt::print(stderr, "{}: the mean training loss of the last steps, {:.4f}, is not below {}\n", program, recent_loss(losses), limit);
    return 1;
}

}  // namespace examples
