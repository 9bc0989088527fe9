/// @file
/// Internal to tensor/safetensors.cpp and tensor/atomic_file.cpp: the POSIX pieces both use (an owned
/// file descriptor, errno as text) and the streaming form of write_file_atomic that save_safetensors
/// writes through. Everything here is in xgrad::detail, outside the API reference.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>

namespace xgrad::detail {

// Owns a file descriptor.
class FileDescriptor {
  public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

  private:
    int fd_;
};

inline std::string errno_text(int err) { return std::generic_category().message(err); }

// write_file_atomic with the contents written by `write(fd)`, so large files need not exist in memory twice.
void write_atomic_with(const std::string& path, const std::function<void(int fd)>& write);

// Writes all of `data` to `fd`, the temporary file write_atomic_with passes to its writer; a failure
// throws std::runtime_error as write_file_atomic's do, naming `path`.
void write_all(int fd, const std::uint8_t* data, std::size_t size, const std::string& path);

}  // namespace xgrad::detail
