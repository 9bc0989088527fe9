#include "atomic_file.hpp"

#include <csignal>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "file_io_detail.hpp"

namespace xgrad {
namespace {

using detail::errno_text;
using detail::FileDescriptor;

[[noreturn]] void fail_io(std::string_view what, const std::string& path, int err) {
    throw std::runtime_error(fmt::format("write_file_atomic: {} {}: {}", what, path, errno_text(err)));
}

// The temporary file beside the destination, removed on scope exit unless it has been renamed into place, so
// every failure path of write_file_atomic cleans up by leaving scope.
class TempFile {
  public:
    // Beside `path` so that rename() stays within one filesystem and is atomic. O_EXCL plus a per-process counter
    // keeps concurrent writers (or a stale file left by a crashed process with the same pid) apart, and mode 0666
    // lets the umask decide the permissions, as for any new file.
    explicit TempFile(const std::string& path) {
        static std::atomic<unsigned> counter{0};
        for (int attempt = 0;; ++attempt) {
            path_ = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter++);
            fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd_ >= 0) return;
            if (errno != EEXIST || attempt == 100) {
                const int err = errno;
                path_.clear();  // nothing of ours to remove
                fail_io("cannot create a temporary file for", path, err);
            }
        }
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    ~TempFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!path_.empty()) ::unlink(path_.c_str());
    }

    int fd() const { return fd_; }
    const std::string& path() const { return path_; }

    // close() can report a failed write-back, so its result counts. The descriptor is gone either way.
    int close() {
        const int rc = ::close(std::exchange(fd_, -1));
        return rc == 0 ? 0 : errno;
    }
    void renamed() { path_.clear(); }

  private:
    std::string path_;
    int fd_ = -1;
};

// Makes the rename itself durable: until the directory entry reaches the disk, a crash can bring back the old file.
void fsync_directory_of(const std::string& path) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    const FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) fail_io("cannot open the directory to sync it after writing", path, errno);
    // Some filesystems cannot sync a directory and say EINVAL; the rename is done and there is nothing more to do.
    if (::fsync(fd.get()) != 0 && errno != EINVAL) fail_io("cannot sync the directory after writing", path, errno);
}

// A writer killed mid-save leaves its temporary file behind. Those of processes that no longer
// exist are removed, so repeated crashes do not litter the folder; a live writer's file is left alone.
void remove_stale_temporaries(const std::string& path) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    const std::string prefix = target.filename().string() + ".tmp.";
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with(prefix)) continue;
        const std::string rest = name.substr(prefix.size());  // "<pid>.<counter>"
        const std::size_t dot = rest.find('.');
        if (dot == 0 || dot == std::string::npos || rest.find_first_not_of("0123456789.") != std::string::npos) continue;
        const long pid = std::strtol(rest.substr(0, dot).c_str(), nullptr, 10);
        if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            fs::remove(entry.path(), ec);
        }
    }
}

}  // namespace

namespace detail {

void write_all(int fd, const std::uint8_t* data, std::size_t size, const std::string& path) {
    while (size > 0) {
        // Linux writes at most about 2 GiB per call and a signal can interrupt: both come back partial or EINTR.
        const ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_io("cannot write the temporary file for", path, errno);
        if (n == 0) fail_io("cannot write the temporary file for", path, EIO);  // would otherwise loop forever
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

void write_atomic_with(const std::string& path, const std::function<void(int fd)>& write) {
    remove_stale_temporaries(path);
    TempFile temp(path);
    write(temp.fd());
    if (::fsync(temp.fd()) != 0) fail_io("cannot sync the temporary file for", path, errno);
    if (int err = temp.close()) fail_io("cannot close the temporary file for", path, err);
    if (::rename(temp.path().c_str(), path.c_str()) != 0) fail_io("cannot rename the temporary file onto", path, errno);
    temp.renamed();
    fsync_directory_of(path);
}

}  // namespace detail

void write_file_atomic(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    detail::write_atomic_with(path, [&](int fd) { detail::write_all(fd, bytes.data(), bytes.size(), path); });
}

void check_atomic_write(const std::string& path) {
    if (path.empty()) throw std::runtime_error("write_file_atomic: the file name is empty");
    if (path.back() == '/') throw std::runtime_error(fmt::format("write_file_atomic: {} names a folder, not a file", path));
    { TempFile probe(path); }  // created and removed: a too-long name or an unwritable folder fails here
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {  // lstat: a dangling symbolic link is an entry rename() replaces
        if (S_ISDIR(st.st_mode)) throw std::runtime_error(fmt::format("write_file_atomic: {} is a folder, not a file", path));
        return;  // an existing entry: rename() will replace it
    }
    if (errno != ENOENT) fail_io("cannot use", path, errno);
    // A new name: creating it is the one test that covers every reason rename() could refuse it.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) fail_io("cannot create", path, errno);
    ::close(fd);
    ::unlink(path.c_str());
}

}  // namespace xgrad
