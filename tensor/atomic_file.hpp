/// @file
/// Files replaced whole or not at all (POSIX): the bytes go to a temporary file beside the destination
/// (named `path.tmp.PID.N`), which is fsynced and renamed over it, then the directory is fsynced. A
/// crash at any moment leaves either the old file or the new one; the temporary files of writers that
/// died mid-write are removed by the next write to the same path. save_safetensors writes this way.
///
/// @code
///   xgrad::check_atomic_write("result.bin");             // before the long work: fails now, not after it
///   std::vector<std::uint8_t> bytes = compute();
///   xgrad::write_file_atomic("result.bin", bytes);
/// @endcode
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xgrad {

/// Fails now, with the error write_file_atomic would give later, if `path` cannot be written: creates
/// and removes the very temporary file it would use (same folder, same name pattern), and checks that
/// `path` itself is a file name that can be created or replaced. Throws std::runtime_error naming
/// `path` and the reason; changes nothing.
void check_atomic_write(const std::string& path);

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
/// the directory: a crash at any moment leaves either the old file or the new one, never a mix.
/// Failures throw std::runtime_error naming `path` and the reason; the temporary file is removed.
void write_file_atomic(const std::string& path, const std::vector<std::uint8_t>& bytes);

}  // namespace xgrad
