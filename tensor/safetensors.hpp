/// @file
/// Named-tensor files in the safetensors format, so weights move to and from the PyTorch
/// ecosystem: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, "__metadata__": {...}}`),
/// then the raw little-endian data.
///
/// @code
///   xgrad::TensorFile<float> f;
///   f.tensors["weight"] = w;
///   f.metadata["format"] = "pt";
///   xgrad::save_safetensors("model.safetensors", f);            // atomic: temp file, fsync, rename
///   auto g = xgrad::load_safetensors<float>("model.safetensors");
/// @endcode
///
/// The reader validates everything before it allocates tensor storage: a header size cap, well-formed
/// JSON, known dtypes, overflow-checked sizes, offsets contiguous and inside the file, exact file
/// length. Every failure throws FileFormatError naming the file and, where there is one, the byte offset.
///
/// The format has no checksum, so the writer adds one: "xgrad.xxh3_64:<name>" in __metadata__ holds the
/// XXH3-64 hash of each tensor's stored bytes (16 hex digits, as `xxhsum -H3` prints it), and
/// "xgrad.xxh3_64:__metadata__" that of the other metadata entries (each key and value after its
/// 8-byte little-endian length). The reader verifies every hash present and hands back the metadata
/// without them. Files from other writers (PyTorch's, say) carry none and load as before.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "atomic_file.hpp"  // check_atomic_write, write_file_atomic: declared here before, so includers keep them
#include "tensor.hpp"

namespace xgrad {

/// A safetensors file that cannot be read: malformed, truncated, an unknown dtype, a content hash
/// that does not match. The message names the file and, where there is one, the byte offset.
class FileFormatError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// The contents of a safetensors file: named tensors and string metadata.
template <class T>
struct TensorFile {
    /// Tensors by name; written in name order.
    std::map<std::string, Tensor<T>> tensors;
    std::map<std::string, std::string> metadata;  ///< stored under "__metadata__"
};

/// Metadata keys of the content hashes: this prefix, then the tensor's name.
inline constexpr std::string_view safetensors_hash_prefix = "xgrad.xxh3_64:";

/// Largest JSON header accepted (as the reference implementation).
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

/// Reads F64, F32, F16 and BF16 tensors, converting to T. Other dtypes are refused by name.
/// Every other fault of the file throws FileFormatError (see the file's description).
template <class T>
TensorFile<T> load_safetensors(const std::string& path);
/// The same from bytes in memory; `source` names them in error messages.
template <class T>
TensorFile<T> parse_safetensors(const std::uint8_t* data, std::size_t size, std::string_view source);

/// Writes T's own dtype (F32 or F64), tensors in name order, with the content hashes; metadata keys
/// starting with safetensors_hash_prefix are reserved (std::invalid_argument).
/// The whole file as bytes; names and metadata must be valid UTF-8 (std::invalid_argument).
template <class T>
std::vector<std::uint8_t> serialize_safetensors(const TensorFile<T>& file);
/// serialize_safetensors, written to `path` with write_file_atomic.
template <class T>
void save_safetensors(const std::string& path, const TensorFile<T>& file);

}  // namespace xgrad
