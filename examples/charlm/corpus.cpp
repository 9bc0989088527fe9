#include "corpus.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace charlm {

std::optional<std::u32string> decode_utf8(std::string_view bytes, Utf8Error& error, bool text_only) {
    std::u32string out;
    out.reserve(bytes.size());
    std::size_t i = 0;
    auto fail = [&](std::string reason) {
        error = {i, std::move(reason)};
        return std::nullopt;
    };
    while (i < bytes.size()) {
        const auto b0 = static_cast<unsigned char>(bytes[i]);
        if (b0 < 0x80) {
            if (b0 == 0 && text_only) return fail("NUL byte (binary data)");
            out.push_back(b0);
            ++i;
            continue;
        }
        std::size_t n;
        char32_t c, min;
        if ((b0 & 0xE0) == 0xC0) {
            n = 2, c = b0 & 0x1F, min = 0x80;
        } else if ((b0 & 0xF0) == 0xE0) {
            n = 3, c = b0 & 0x0F, min = 0x800;
        } else if ((b0 & 0xF8) == 0xF0) {
            n = 4, c = b0 & 0x07, min = 0x10000;
        } else {
            return fail(fmt::format("invalid byte 0x{:02X}", b0));
        }
        if (i + n > bytes.size()) return fail(fmt::format("truncated {}-byte sequence", n));
        for (std::size_t k = 1; k < n; ++k) {
            const auto b = static_cast<unsigned char>(bytes[i + k]);
            if ((b & 0xC0) != 0x80) return fail(fmt::format("byte 0x{:02X} does not continue the sequence", b));
            c = (c << 6) | (b & 0x3F);
        }
        if (c < min) return fail("overlong encoding");
        if (!is_scalar_value(c)) return fail(fmt::format("invalid code point U+{:04X}", static_cast<std::uint32_t>(c)));
        out.push_back(c);
        i += n;
    }
    return out;
}

std::string encode_utf8(std::u32string_view text) {
    std::string out;
    for (char32_t c : text) {
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else if (c < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (c >> 6)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else if (c < 0x10000) {
            out.push_back(static_cast<char>(0xE0 | (c >> 12)));
            out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else {
            out.push_back(static_cast<char>(0xF0 | (c >> 18)));
            out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        }
    }
    return out;
}

namespace {
std::optional<std::string> read_bytes(const std::filesystem::path& path, std::string& why) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        why = std::strerror(errno);
        return std::nullopt;
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
        why = "read error";
        return std::nullopt;
    }
    return bytes;
}
}  // namespace

Corpus load_corpus(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) throw InputError(fmt::format("corpus {}: no such file or folder", path));
    Corpus corpus;
    if (fs::is_directory(status)) {
        std::vector<fs::path> entries;
        for (const auto& entry : fs::directory_iterator(path, ec)) entries.push_back(entry.path());
        if (ec) throw InputError(fmt::format("corpus {}: cannot list the folder: {}", path, ec.message()));
        std::sort(entries.begin(), entries.end());
        for (const fs::path& file : entries) {
            const fs::file_status s = fs::symlink_status(file, ec);
            if (ec || fs::is_symlink(s) || !fs::is_regular_file(s)) continue;
            std::string why;
            Utf8Error error;
            auto bytes = read_bytes(file, why);
            auto text = bytes ? decode_utf8(*bytes, error) : std::nullopt;
            if (!text) {
                corpus.skipped.push_back({file.filename().string(), bytes ? not_utf8_text : why});
                continue;
            }
            corpus.text += *text;
            corpus.files.push_back(file.string());
        }
        if (corpus.text.empty()) {
            throw InputError(fmt::format("corpus {}: the folder has no readable, non-empty UTF-8 text files", path));
        }
        return corpus;
    }
    if (!fs::is_regular_file(status)) throw InputError(fmt::format("corpus {}: not a regular file or a folder", path));
    std::string why;
    auto bytes = read_bytes(path, why);
    if (!bytes) throw InputError(fmt::format("corpus {}: cannot read: {}", path, why));
    if (bytes->empty()) throw InputError(fmt::format("corpus {}: the file is empty", path));
    Utf8Error error;
    auto text = decode_utf8(*bytes, error);
    if (!text) {
        throw InputError(fmt::format("corpus {}: not UTF-8 text: {} at byte offset {}", path, error.reason, error.offset));
    }
    corpus.text = std::move(*text);
    corpus.files.push_back(path);
    return corpus;
}

void warn_skipped(const Corpus& corpus, const std::string& path) {
    if (corpus.skipped.empty()) return;
    // Names of the files that are not text, the first few only (Debian's fortunes folder has 43 index
    // files beside its texts); unreadable files each with their error, all of them.
    constexpr std::size_t named = 5;
    std::vector<std::string> binary, unreadable;
    for (const SkippedFile& s : corpus.skipped) {
        if (s.why == not_utf8_text) {
            binary.push_back(s.name);
        } else {
            unreadable.push_back(fmt::format("{} ({})", s.name, s.why));
        }
    }
    std::string parts;
    if (!binary.empty()) {
        const std::size_t shown = std::min(binary.size(), named);
        parts = fmt::format("{} not UTF-8 text: {}{}", binary.size(),
                            fmt::join(binary.begin(), binary.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                            binary.size() > shown ? fmt::format(" and {} more", binary.size() - shown) : "");
    }
    if (!unreadable.empty()) parts += fmt::format("{}{} unreadable: {}", parts.empty() ? "" : "; ", unreadable.size(), fmt::join(unreadable, ", "));
    std::fflush(stdout);
    fmt::print(stderr, "warning: skipped {} files of {}: {}\n", corpus.skipped.size(), path, parts);
}

bool is_scalar_value(std::uint32_t c) { return c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF); }

Vocabulary::Vocabulary(std::u32string symbols) : symbols_(std::move(symbols)) {
    for (char32_t c : symbols_) {
        if (!is_scalar_value(c)) {
            throw InputError(fmt::format("vocabulary: U+{:04X} is not a Unicode scalar value (surrogate or past U+10FFFF)",
                                         static_cast<std::uint32_t>(c)));
        }
    }
    if (!std::is_sorted(symbols_.begin(), symbols_.end()) ||
        std::adjacent_find(symbols_.begin(), symbols_.end()) != symbols_.end()) {
        throw InputError("vocabulary: symbols must be sorted and distinct");
    }
}

Vocabulary Vocabulary::of(std::u32string_view text) {
    std::u32string symbols(text);
    std::sort(symbols.begin(), symbols.end());
    symbols.erase(std::unique(symbols.begin(), symbols.end()), symbols.end());
    return Vocabulary(std::move(symbols));
}

std::optional<std::int64_t> Vocabulary::index(char32_t c) const {
    auto it = std::lower_bound(symbols_.begin(), symbols_.end(), c);
    if (it == symbols_.end() || *it != c) return std::nullopt;
    return static_cast<std::int64_t>(it - symbols_.begin());
}

std::string describe(char32_t c) {
    if (c >= 0x20 && c != 0x7F && c < 0x110000 && c != '\'') return fmt::format("'{}'", encode_utf8(std::u32string(1, c)));
    return fmt::format("U+{:04X}", static_cast<std::uint32_t>(c));
}

}  // namespace charlm
