// Text for the character-level language model: strict UTF-8 decoding, corpus files and folders,
// the vocabulary of code points, and the contiguous batch streams.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace charlm {

// One line naming the file, flag or byte offset at fault.
class InputError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct Utf8Error {
    std::size_t offset = 0;  // of the first byte of the bad sequence
    std::string reason;
};

// Decodes strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). With
// `text_only`, a NUL byte also counts as an error: it marks binary data, not text.
std::optional<std::u32string> decode_utf8(std::string_view bytes, Utf8Error& error, bool text_only = true);
std::string encode_utf8(std::u32string_view text);

// A file of a folder that was not read: `why` is not_utf8_text, or the error that stopped the read.
struct SkippedFile {
    std::string name, why;
    bool operator==(const SkippedFile&) const = default;
};
inline constexpr const char* not_utf8_text = "not UTF-8 text";

struct Corpus {
    std::u32string text;
    std::vector<std::string> files;     // read, in order
    std::vector<SkippedFile> skipped;   // in a folder: files not UTF-8 text, or unreadable
};

// A file, or a folder whose regular files are read in name order (symbolic links are not
// followed; files that are not UTF-8 text are skipped and listed). Throws InputError for a
// missing, unreadable or empty corpus, invalid UTF-8 in a file named directly (with the byte
// offset), or a folder with no readable text.
Corpus load_corpus(const std::string& path);
// One warning line on stderr listing the files of folder `path` that were skipped: those that are
// not UTF-8 text by name, unreadable ones with their error.
void warn_skipped(const Corpus& corpus, const std::string& path);

// Whether `c` is a Unicode scalar value: at most U+10FFFF and not a surrogate (what UTF-8 can encode).
bool is_scalar_value(std::uint32_t c);

// The distinct code points of a text, sorted.
class Vocabulary {
  public:
    Vocabulary() = default;
    explicit Vocabulary(std::u32string symbols);  // sorted, distinct Unicode scalar values (else InputError)
    static Vocabulary of(std::u32string_view text);
    std::size_t size() const { return symbols_.size(); }
    const std::u32string& symbols() const { return symbols_; }
    char32_t symbol(std::size_t index) const { return symbols_.at(index); }
    std::optional<std::int64_t> index(char32_t c) const;
    bool operator==(const Vocabulary&) const = default;

  private:
    std::u32string symbols_;
};

// "'a'" for printable characters, "U+0007" otherwise: for messages.
std::string describe(char32_t c);

}  // namespace charlm
