/// @file
/// Numbers read back from saved metadata (optimizer and scheduler state). Internal to optim/.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace xgrad::optim {

/// The integer the whole string is, or none: "12abc" is malformed, not 12.
inline std::optional<std::int64_t> whole_integer(const std::string& text) {
    std::size_t used = 0;
    try {
        const std::int64_t value = std::stoll(text, &used);
        if (used == text.size()) return value;
    } catch (const std::logic_error&) {
    }
    return std::nullopt;
}

/// The double the whole string is (decimal or hexadecimal), or none: "0x1p-3 " is malformed, not 0.125.
inline std::optional<double> whole_double(const std::string& text) {
    std::size_t used = 0;
    try {
        const double value = std::stod(text, &used);
        if (used == text.size()) return value;
    } catch (const std::logic_error&) {
    }
    return std::nullopt;
}

}  // namespace xgrad::optim
