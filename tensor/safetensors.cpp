#include "safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#define XXH_INLINE_ALL  // header-only: nothing for xgrad's users to link
#include <xxhash.h>

#include "file_io_detail.hpp"

namespace xgrad {
namespace {

// Tensor data is copied to and from the file with memcpy, which is only right on a little-endian machine.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian: add byte swapping");

using detail::errno_text;
using detail::FileDescriptor;
using detail::write_all;
using detail::write_atomic_with;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::uint64_t length_size = 8;  // the little-endian u64 in front of the JSON header
constexpr std::size_t max_rank = 64;      // far beyond any real tensor; keeps absurd headers cheap to reject
constexpr std::size_t max_error_text = 200;

// ---------------------------------------------------------------------------------------------------------------
// Errors

[[noreturn]] void fail(std::string_view source, std::string_view what) {
    throw FileFormatError(fmt::format("{}: {}", source, what));
}

[[noreturn]] void fail_at(std::string_view source, std::uint64_t offset, std::string_view what) {
    throw FileFormatError(fmt::format("{}: {} (byte offset {})", source, what, offset));
}

// Names and dtypes come from the file: quoting them JSON-style keeps a newline or control character in one
// from breaking the one-line message.
std::string quote(std::string_view s) {
    return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Text from the file can be long (a 100 MB header is allowed): messages show the start of it.
std::string shorten(std::string_view s) {
    if (s.size() > max_error_text) return fmt::format("{}...", s.substr(0, max_error_text));
    return std::string(s);
}

// "[json.exception.parse_error.101] parse error at line 1, column 8: syntax error ..." -> "syntax error ...":
// the position is reported as a byte offset instead.
std::string json_error_text(std::string_view what) {
    if (auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
    if (auto p = what.find(", column "); p != std::string_view::npos) {
        if (auto q = what.find(": ", p); q != std::string_view::npos) what.remove_prefix(q + 2);
    }
    return shorten(what);
}

// ---------------------------------------------------------------------------------------------------------------
// Dtypes

enum class DType { f64, f32, f16, bf16 };

struct DTypeName {
    std::string_view name;
    DType dtype;
};

constexpr std::array<DTypeName, 4> readable_dtypes{{
    {"F64", DType::f64},
    {"F32", DType::f32},
    {"F16", DType::f16},
    {"BF16", DType::bf16},
}};

// Valid safetensors dtypes that have no meaning for float weights here: refused by name, not as garbage.
constexpr std::array<std::string_view, 11> unsupported_dtypes{
    "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2",
};

std::uint64_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::f64: return 8;
        case DType::f32: return 4;
        case DType::f16: return 2;
        case DType::bf16: return 2;
    }
    return 0;
}

std::string_view dtype_name(DType dtype) {
    for (const DTypeName& d : readable_dtypes) {
        if (d.dtype == dtype) return d.name;
    }
    return "?";
}

template <class T>
constexpr DType own_dtype() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "xgrad tensors are float or double");
    return std::is_same_v<T, float> ? DType::f32 : DType::f64;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every value is exact in float.
float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h >> 15) << 31;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    const std::uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        // Zero and subnormals, mantissa * 2^-24: float has the range to make these normal numbers.
        float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 0x1f) {
        // Infinity and NaN keep their payload bits.
        return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    }
    // Normal: re-bias the exponent from 15 to 127 and widen the mantissa from 10 to 23 bits.
    return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

// bfloat16 is the top half of a float32, subnormals, infinities and NaNs included.
float bfloat16_to_float(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

template <class U>
U load_le(const std::uint8_t* p) {
    U value;
    std::memcpy(&value, p, sizeof value);  // the data has no alignment guarantee
    return value;
}

template <class T>
void decode(DType dtype, const std::uint8_t* src, std::size_t count, T* dst) {
    if (count == 0) return;
    if (dtype == own_dtype<T>()) {
        std::memcpy(dst, src, count * sizeof(T));
        return;
    }
    switch (dtype) {
        case DType::f64:
            for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<T>(load_le<double>(src + 8 * i));
            break;
        case DType::f32:
            for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<T>(load_le<float>(src + 4 * i));
            break;
        case DType::f16:
            for (std::size_t i = 0; i < count; ++i) dst[i] = half_to_float(load_le<std::uint16_t>(src + 2 * i));
            break;
        case DType::bf16:
            for (std::size_t i = 0; i < count; ++i) dst[i] = bfloat16_to_float(load_le<std::uint16_t>(src + 2 * i));
            break;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the header

struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    std::uint64_t count;  // elements
    std::uint64_t begin;  // byte range within the data section, which starts after the header
    std::uint64_t end;
};

struct Header {
    std::vector<Entry> entries;  // in name order
    std::map<std::string, std::string> metadata;
    std::uint64_t data_start;  // file offset of the data section: 8 + header length
};

// The header length, checked against the file size before any of the header is read. `prefix` holds the
// file's first min(file_size, 8) bytes.
std::uint64_t header_length(std::uint64_t file_size, const std::uint8_t* prefix, std::string_view source) {
    if (file_size < length_size) {
        fail_at(source, 0, fmt::format("file is {} bytes, shorter than the 8-byte header length", file_size));
    }
    const std::uint64_t n = load_le<std::uint64_t>(prefix);
    if (n > safetensors_max_header) {
        fail_at(source, 0, fmt::format("header length {} exceeds the limit of {} bytes", n, safetensors_max_header));
    }
    if (n > file_size - length_size) {
        fail_at(source, 0, fmt::format("header length {} runs past the end of the file ({} bytes)", n, file_size));
    }
    return n;
}

// Parses the JSON text, refusing duplicate keys: nlohmann would keep the last one silently, and a file whose
// readers disagree on which tensor a name means is not one to load.
json parse_json(std::string_view text, std::string_view source) {
    std::vector<std::unordered_set<std::string>> open_objects;  // the keys seen so far in each open object
    auto check_keys = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
            open_objects.emplace_back();
        } else if (event == json::parse_event_t::object_end) {
            open_objects.pop_back();
        } else if (event == json::parse_event_t::key) {
            const std::string& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second) {
                const bool tensor_name = open_objects.size() == 1 && key != "__metadata__";
                fail(source, fmt::format("duplicate {} {} in the JSON header", tensor_name ? "tensor name" : "key",
                                         quote(key)));
            }
        }
        return true;
    };
    try {
        return json::parse(text.begin(), text.end(), check_keys);
    } catch (const json::parse_error& e) {
        // e.byte counts the characters read, so the offending one is at e.byte - 1 (or the end of the text).
        const std::uint64_t pos = std::min<std::uint64_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
        fail_at(source, length_size + pos, fmt::format("malformed JSON header: {}", json_error_text(e.what())));
    } catch (const json::exception& e) {
        // Number overflow and the like: no position to report.
        fail(source, fmt::format("malformed JSON header: {}", json_error_text(e.what())));
    }
}

DType parse_dtype(std::string_view tensor, const json& value, std::string_view source) {
    if (!value.is_string()) {
        fail(source, fmt::format("{}: dtype must be a string, not {}", tensor, shorten(value.dump())));
    }
    const std::string& name = value.get_ref<const std::string&>();
    for (const DTypeName& d : readable_dtypes) {
        if (d.name == name) return d.dtype;
    }
    if (std::find(unsupported_dtypes.begin(), unsupported_dtypes.end(), name) != unsupported_dtypes.end()) {
        fail(source, fmt::format("{}: dtype {} is not supported (xgrad reads F64, F32, F16 and BF16)", tensor, name));
    }
    fail(source, fmt::format("{}: unknown dtype {}", tensor, quote(name)));
}

// A JSON number that is a non-negative integer fitting u64: nlohmann stores exactly those as unsigned
// (negative integers are signed; fractions, exponents and larger integers are floats).
bool is_u64(const json& value) { return value.is_number_unsigned(); }

Shape parse_shape(std::string_view tensor, const json& value, std::string_view source) {
    if (!value.is_array() || !std::all_of(value.begin(), value.end(), is_u64)) {
        fail(source, fmt::format("{}: shape must be an array of non-negative integers", tensor));
    }
    if (value.size() > max_rank) {
        fail(source, fmt::format("{}: rank {} exceeds the limit of {}", tensor, value.size(), max_rank));
    }
    Shape shape;
    for (const json& d : value) {
        const auto dim = d.get<std::uint64_t>();
        if (dim > std::numeric_limits<std::size_t>::max()) fail(source, fmt::format("{}: dimension too large", tensor));
        shape.push_back(static_cast<std::size_t>(dim));
    }
    return shape;
}

Entry parse_entry(const std::string& name, const json& value, std::string_view source) {
    const std::string tensor = fmt::format("tensor {}", quote(name));
    if (!value.is_object()) fail(source, fmt::format("{}: entry must be an object, not {}", tensor, value.type_name()));
    for (const auto& item : value.items()) {
        const std::string& key = item.key();
        if (key != "dtype" && key != "shape" && key != "data_offsets") {
            fail(source, fmt::format("{}: unexpected key {} (expected dtype, shape and data_offsets)", tensor,
                                     quote(key)));
        }
    }
    auto field = [&](const char* key) -> const json& {
        auto it = value.find(key);
        if (it == value.end()) fail(source, fmt::format("{}: missing {}", tensor, key));
        return *it;
    };

    Entry entry{name, parse_dtype(tensor, field("dtype"), source), parse_shape(tensor, field("shape"), source), 0, 0,
                0};

    const json& offsets = field("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2 || !is_u64(offsets[0]) || !is_u64(offsets[1])) {
        fail(source, fmt::format("{}: data_offsets must be an array of two non-negative integers, not {}", tensor,
                                 shorten(offsets.dump())));
    }
    entry.begin = offsets[0].get<std::uint64_t>();
    entry.end = offsets[1].get<std::uint64_t>();
    if (entry.begin > entry.end) {
        fail(source, fmt::format("{}: data_offsets [{}, {}] end before they begin", tensor, entry.begin, entry.end));
    }

    const std::uint64_t size = dtype_size(entry.dtype);
    // Checked left to right, as the reference does, so [2^40, 2^40, 0] is refused though it has no elements.
    const std::optional<std::uint64_t> count = checked_numel(entry.shape);
    if (!count || *count > std::numeric_limits<std::size_t>::max() / size) {
        fail(source, fmt::format("{}: shape {} overflows the element or byte count", tensor, shape_str(entry.shape)));
    }
    entry.count = *count;
    if (entry.count * size != entry.end - entry.begin) {
        fail(source, fmt::format("{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", tensor,
                                 shape_str(entry.shape), dtype_name(entry.dtype), entry.count * size, entry.begin,
                                 entry.end, entry.end - entry.begin));
    }
    return entry;
}

std::map<std::string, std::string> parse_metadata(const json& value, std::string_view source) {
    if (!value.is_object()) fail(source, fmt::format("__metadata__ must be an object, not {}", value.type_name()));
    std::map<std::string, std::string> metadata;
    for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) {
            fail(source, fmt::format("__metadata__ value for {} must be a string, not {}", quote(key),
                                     item.type_name()));
        }
        metadata.emplace(key, item.get<std::string>());
    }
    return metadata;
}

// The reference implementation's rule: sorted by position, the tensors' byte ranges tile the data section
// exactly. An overlap would read one tensor's bytes as another's, a hole or trailing bytes are data nobody
// accounts for, and a range past the end means the file is truncated.
void check_tiling(const std::vector<Entry>& entries, std::uint64_t data_start, std::uint64_t data_size,
                  std::string_view source) {
    std::vector<const Entry*> order;
    for (const Entry& e : entries) order.push_back(&e);
    // By (begin, end), so zero-byte tensors sharing a position with a larger one come first.
    std::sort(order.begin(), order.end(),
              [](const Entry* a, const Entry* b) { return std::pair(a->begin, a->end) < std::pair(b->begin, b->end); });

    std::uint64_t cursor = 0;  // where the data covered so far ends; never beyond data_size
    const Entry* previous = nullptr;
    for (const Entry* e : order) {
        const std::string where = fmt::format("tensor {} (data_offsets [{}, {}])", quote(e->name), e->begin, e->end);
        if (e->begin < cursor) {
            fail_at(source, data_start + e->begin,
                    fmt::format("{} overlaps tensor {}, which ends at {}", where, quote(previous->name), cursor));
        }
        if (e->end > data_size) {
            fail_at(source, data_start + data_size,
                    fmt::format("{} runs past the end of the file, whose data section holds {} bytes (truncated?)",
                                where, data_size));
        }
        if (e->begin > cursor) {
            fail_at(source, data_start + cursor, fmt::format("{} unused bytes before {}", e->begin - cursor, where));
        }
        cursor = e->end;
        previous = e;
    }
    if (cursor != data_size) {
        fail_at(source, data_start + cursor,
                fmt::format("{} trailing bytes after the last tensor", data_size - cursor));
    }
}

// Everything about the file checked, nothing allocated for tensors yet.
Header parse_header(const std::uint8_t* data, std::size_t size, std::string_view source) {
    const std::uint64_t n = header_length(size, data, source);
    const std::string_view text(reinterpret_cast<const char*>(data + length_size), n);
    const json root = parse_json(text, source);
    if (!root.is_object()) {
        fail_at(source, length_size, fmt::format("the JSON header must be an object, not {}", root.type_name()));
    }

    Header header;
    header.data_start = length_size + n;
    for (const auto& [name, value] : root.items()) {
        if (name == "__metadata__") {
            header.metadata = parse_metadata(value, source);
        } else {
            header.entries.push_back(parse_entry(name, value, source));
        }
    }
    check_tiling(header.entries, header.data_start, size - header.data_start, source);
    return header;
}

// ---------------------------------------------------------------------------------------------------------------
// Content hashes: "xgrad.xxh3_64:<name>" in __metadata__ holds XXH3-64 of tensor <name>'s bytes as stored, in 16
// lowercase hex digits. safetensors itself has no checksum, so without these a flipped bit loads silently.

// A tensor's buffer as the bytes stored in the file (an empty xarray may have no buffer at all).
template <class T>
std::string_view tensor_bytes(const Tensor<T>& t) {
    if (t.size() == 0) return {};
    return {reinterpret_cast<const char*>(t.data()), t.size() * sizeof(T)};
}

std::string content_hash(const std::uint8_t* bytes, std::size_t size) {
    return fmt::format("{:016x}", static_cast<std::uint64_t>(XXH3_64bits(bytes, size)));
}

// The metadata's own hash covers every entry but the hashes, each key and value length-prefixed so that
// no two different maps encode alike.
constexpr std::string_view metadata_hash_name = "__metadata__";  // never a tensor's name: the writer refuses it

std::string metadata_hash(const std::map<std::string, std::string>& metadata) {
    std::string encoded;
    auto add = [&](const std::string& text) {
        const std::uint64_t n = text.size();
        encoded.append(reinterpret_cast<const char*>(&n), sizeof n);
        encoded += text;
    };
    for (const auto& [key, value] : metadata) {
        add(key);
        add(value);
    }
    return content_hash(reinterpret_cast<const std::uint8_t*>(encoded.data()), encoded.size());
}

// Checks every tensor, and the metadata, against the stored hashes and removes the hash entries from the
// metadata. A file with no hash entries (written by another program) passes; a file with some must have one
// for every tensor and one for the metadata.
void verify_content_hashes(Header& header, const std::uint8_t* data, std::string_view source) {
    std::map<std::string, std::string> hashes;
    for (auto it = header.metadata.begin(); it != header.metadata.end();) {
        if (it->first.starts_with(safetensors_hash_prefix)) {
            hashes.emplace(it->first.substr(safetensors_hash_prefix.size()), it->second);
            it = header.metadata.erase(it);
        } else {
            ++it;
        }
    }
    if (hashes.empty()) return;
    auto stored = hashes.find(std::string(metadata_hash_name));
    if (stored == hashes.end()) fail(source, "the metadata has no content hash, though the file has others");
    if (stored->second != metadata_hash(header.metadata)) {
        fail(source, fmt::format("the metadata does not match its content hash (stored {}, computed {}): the file is damaged",
                                 shorten(quote(stored->second)), metadata_hash(header.metadata)));
    }
    hashes.erase(stored);
    for (const Entry& e : header.entries) {
        auto found = hashes.find(e.name);
        if (found == hashes.end()) {
            fail(source, fmt::format("tensor {} has no content hash, though the file's other tensors do", quote(e.name)));
        }
        const std::string actual = content_hash(data + header.data_start + e.begin, e.end - e.begin);
        if (found->second != actual) {
            fail_at(source, header.data_start + e.begin,
                    fmt::format("tensor {}: its bytes do not match their content hash (stored {}, computed {}): the "
                                "file is damaged", quote(e.name), shorten(quote(found->second)), actual));
        }
        hashes.erase(found);
    }
    if (!hashes.empty()) {
        fail(source, fmt::format("a content hash for tensor {}, which the file does not hold", quote(hashes.begin()->first)));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the file

void read_exact(int fd, std::uint8_t* dst, std::uint64_t size, std::uint64_t offset, std::string_view path) {
    while (size > 0) {
        const ssize_t n = ::pread(fd, dst, size, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_at(path, offset, fmt::format("read failed: {}", errno_text(errno)));
        if (n == 0) fail_at(path, offset, "file shrank while being read");
        dst += n;
        size -= static_cast<std::uint64_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
}

// The whole file, after the length prefix has been checked against the file size (so a hostile length cannot
// make us allocate or read more than the file holds).
std::vector<std::uint8_t> read_whole_file(const std::string& path) {
    const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) fail(path, fmt::format("cannot open: {}", errno_text(errno)));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) fail(path, fmt::format("cannot stat: {}", errno_text(errno)));
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    const auto size = static_cast<std::uint64_t>(st.st_size);

    std::array<std::uint8_t, length_size> prefix{};
    read_exact(fd.get(), prefix.data(), std::min(size, length_size), 0, path);
    header_length(size, prefix.data(), path);

    std::vector<std::uint8_t> bytes(size);
    std::copy(prefix.begin(), prefix.end(), bytes.begin());
    read_exact(fd.get(), bytes.data() + length_size, size - length_size, length_size, path);
    // A file that grew meanwhile would be judged on a stale size: refuse it rather than guess.
    std::uint8_t extra;
    ssize_t n;
    do {
        n = ::pread(fd.get(), &extra, 1, static_cast<off_t>(size));
    } while (n < 0 && errno == EINTR);
    if (n != 0) fail_at(path, size, "file grew while being read");
    return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

// The JSON header: "__metadata__" first, then the tensors in `entries` order, each with dtype, shape and
// data_offsets in that order (the reference's layout), padded with spaces to a multiple of 8 bytes so the data
// section starts aligned. Built piece by piece because a json object would sort each entry's keys.
std::string encode_header(const std::vector<Entry>& entries, const std::map<std::string, std::string>& metadata) {
    std::string text = "{";
    auto add = [&](const std::string& key, const ordered_json& value) {
        if (text.size() > 1) text += ',';
        text += ordered_json(key).dump();
        text += ':';
        text += value.dump();
    };
    try {
        if (!metadata.empty()) add("__metadata__", ordered_json(metadata));
        for (const Entry& e : entries) {
            if (e.name == "__metadata__") {
                throw std::invalid_argument("serialize_safetensors: \"__metadata__\" is reserved, not a tensor name");
            }
            ordered_json value = ordered_json::object();
            value["dtype"] = dtype_name(e.dtype);
            value["shape"] = e.shape;
            value["data_offsets"] = {e.begin, e.end};
            add(e.name, value);
        }
    } catch (const json::type_error& e) {
        // nlohmann refuses to write invalid UTF-8, which no reader would accept either.
        throw std::invalid_argument(fmt::format(
            "serialize_safetensors: tensor names and metadata must be valid UTF-8 ({})", json_error_text(e.what())));
    }
    text += '}';
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Public API

template <class T>
TensorFile<T> parse_safetensors(const std::uint8_t* data, std::size_t size, std::string_view source) {
    Header header = parse_header(data, size, source);
    verify_content_hashes(header, data, source);
    TensorFile<T> file;
    file.metadata = std::move(header.metadata);
    for (const Entry& e : header.entries) {
        Tensor<T> t = Tensor<T>::from_shape(e.shape);
        decode(e.dtype, data + header.data_start + e.begin, static_cast<std::size_t>(e.count), t.data());
        file.tensors.emplace(e.name, std::move(t));
    }
    return file;
}

template <class T>
TensorFile<T> load_safetensors(const std::string& path) {
    const std::vector<std::uint8_t> bytes = read_whole_file(path);
    return parse_safetensors<T>(bytes.data(), bytes.size(), path);
}

namespace {
// The 8-byte length prefix and the JSON header of `file`, with a content hash per tensor. The data
// section that follows is each tensor's bytes, in name order (tensor_bytes).
template <class T>
std::string prefix_and_header(const TensorFile<T>& file) {
    // The data goes out as each tensor's buffer, which is row-major order only for a row-major container.
    static_assert(Tensor<T>::static_layout == xt::layout_type::row_major, "safetensors data is row-major");
    std::vector<Entry> entries;
    std::uint64_t offset = 0;
    for (const auto& [key, value] : file.metadata) {
        if (key.starts_with(safetensors_hash_prefix)) {
            throw std::invalid_argument(fmt::format("serialize_safetensors: metadata key {} is reserved for the content hashes",
                                                    quote(key)));
        }
    }
    std::map<std::string, std::string> metadata = file.metadata;
    if (!file.tensors.empty() || !file.metadata.empty()) {  // an empty file stays "{}"
        metadata[fmt::format("{}{}", safetensors_hash_prefix, metadata_hash_name)] = metadata_hash(file.metadata);
    }
    for (const auto& [name, tensor] : file.tensors) {  // a std::map: name order
        const std::string_view bytes = tensor_bytes(tensor);
        entries.push_back({name, own_dtype<T>(), shape_of(tensor), tensor.size(), offset, offset + bytes.size()});
        offset += bytes.size();
        metadata[std::string(safetensors_hash_prefix) + name] =
            content_hash(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    }
    const std::string header = encode_header(entries, metadata);
    std::string out(length_size, '\0');
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, length_size);
    return out + header;
}
}  // namespace

template <class T>
std::vector<std::uint8_t> serialize_safetensors(const TensorFile<T>& file) {
    const std::string head = prefix_and_header(file);
    std::vector<std::uint8_t> out(head.begin(), head.end());
    for (const auto& [name, tensor] : file.tensors) {
        const std::string_view bytes = tensor_bytes(tensor);
        out.insert(out.end(), bytes.begin(), bytes.end());
    }
    return out;
}

template <class T>
void save_safetensors(const std::string& path, const TensorFile<T>& file) {
    // Streamed tensor by tensor: a checkpoint as large as the model and its optimizer state is not copied again.
    const std::string head = prefix_and_header(file);  // refuses bad names before any file exists
    write_atomic_with(path, [&](int fd) {
        write_all(fd, reinterpret_cast<const std::uint8_t*>(head.data()), head.size(), path);
        for (const auto& [name, tensor] : file.tensors) {
            const std::string_view bytes = tensor_bytes(tensor);
            write_all(fd, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), path);
        }
    });
}

template TensorFile<float> load_safetensors<float>(const std::string&);
template TensorFile<double> load_safetensors<double>(const std::string&);
template TensorFile<float> parse_safetensors<float>(const std::uint8_t*, std::size_t, std::string_view);
template TensorFile<double> parse_safetensors<double>(const std::uint8_t*, std::size_t, std::string_view);
template std::vector<std::uint8_t> serialize_safetensors<float>(const TensorFile<float>&);
template std::vector<std::uint8_t> serialize_safetensors<double>(const TensorFile<double>&);
template void save_safetensors<float>(const std::string&, const TensorFile<float>&);
template void save_safetensors<double>(const std::string&, const TensorFile<double>&);

}  // namespace xgrad
