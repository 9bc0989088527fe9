// Command-line handling shared by the example programs (CLI11): checks that refuse NaN and ±Inf
// and a seed beyond 64 bits, and parsing that reports any bad flag in one line with exit status 1.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

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

// CLI11 turns an integer above 2^64 - 1 into 2^64 - 1 without a word, and NonNegativeNumber lets
// it through: every --seed goes through this check, which wants a whole number in [0, 2^64 - 1].
inline CLI::Validator seed_number() {
    return CLI::Validator(
        [](std::string& text) -> std::string {
            std::uint64_t value = 0;
            const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
            if (error == std::errc::result_out_of_range) return "'" + text + "' is above 2^64 - 1, the largest seed";
            if (error != std::errc() || end != text.data() + text.size()) return "'" + text + "' is not a whole number >= 0";
            return std::string();
        },
        "SEED");
}

// Where the command line says the program stops instead of going on: its exit status and what it
// prints (the help on stdout for status 0, one line of error on stderr otherwise).
struct CommandLineStop {
    int status = 1;
    std::string text;
};

// Prints a stop's text: the help as it is, an error as "<program>: <what was wrong>".
inline void print_stop(const CommandLineStop& stop, std::string_view program) {
    if (stop.status == 0) {
        fmt::print("{}", stop.text);
    } else {
        fmt::print(stderr, "{}: {}\n", program, stop.text);
    }
}

// Parses the command line, printing nothing: the stop (after --help, or an error CLI11 found), or
// nothing when the program should go on.
inline std::optional<CommandLineStop> read_command_line(CLI::App& app, int argc, char** argv) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success&) {  // --help: the help of the subcommand given, if any
        return CommandLineStop{0, app.help()};
    } catch (const CLI::ParseError& e) {
        return CommandLineStop{1, e.what()};
    }
    return std::nullopt;
}

// Parses the command line. Returns the exit status when the program should stop now: 0 after
// printing --help, 1 after printing "<program>: <what was wrong>" (CLI11 alone would print two lines
// and exit with its own codes); nothing when the program should go on.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, std::string_view program) {
    const std::optional<CommandLineStop> stop = read_command_line(app, argc, argv);
    if (!stop) return std::nullopt;
    print_stop(*stop, program);
    return stop->status;
}

}  // namespace examples
