// The files a training run writes (--out, its lock, --metrics): checked before anything is trained.
#include "outputs.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <xgrad/tensor/safetensors.hpp>

namespace charlm {

namespace {
// The same file, however it is spelled (links, "./", ".."): by device and inode when it exists,
// else by its absolute, normalized path.
bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    const bool a_exists = ::stat(a.c_str(), &sa) == 0, b_exists = ::stat(b.c_str(), &sb) == 0;
    if (a_exists || b_exists) return a_exists && b_exists && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    std::error_code ec;
    return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}
}  // namespace

void check_output_path(const std::string& out) {
    namespace fs = std::filesystem;
    const fs::path path(out);
    if (fs::is_directory(path)) throw InputError(fmt::format("--out {}: is a folder, not a file name", out));
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    if (!fs::is_directory(dir)) throw InputError(fmt::format("--out {}: folder {} does not exist", out, dir.string()));
    try {
        xgrad::check_atomic_write(out);
    } catch (const std::runtime_error& e) {
        std::string why = e.what();
        if (why.starts_with("write_file_atomic: ")) why.erase(0, std::string_view("write_file_atomic: ").size());
        throw InputError(fmt::format("--out {}: {}", out, why));
    }
}

void check_outputs_apart(const TrainArgs& args, const Corpus& corpus) {
    // --out over the corpus would replace the text with a checkpoint; --metrics over the checkpoint
    // being resumed would append CSV rows to it. --out over that checkpoint is how training goes on.
    auto refuse_inputs = [&](const std::string& flag, const std::string& path, bool resumed_too) {
        for (const std::string& file : corpus.files) {
            if (same_file(path, file)) throw InputError(fmt::format("{} {}: it is the corpus ({}), which it would overwrite", flag, path, file));
        }
        if (resumed_too && !args.resume.empty() && same_file(path, args.resume)) {
            throw InputError(fmt::format("{} {}: it is the --resume checkpoint ({}), which it would overwrite", flag, path, args.resume));
        }
    };
    refuse_inputs("--out", args.out, false);
    if (args.metrics.empty()) return;
    refuse_inputs("--metrics", args.metrics, true);
    if (same_file(args.out, args.metrics)) {
        throw InputError(fmt::format("--metrics {}: it is the --out checkpoint ({})", args.metrics, args.out));
    }
}

OutputLock::OutputLock(const std::string& out) : path_(out + ".lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw InputError(fmt::format("--out {}: cannot open the lock file {}: {}", out, path_, std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        char pid[32] = {};
        const ssize_t n = ::pread(fd_, pid, sizeof pid - 1, 0);
        ::close(fd_);
        if (err == EWOULDBLOCK) {
            throw InputError(fmt::format("--out {}: another run (pid {}) is writing it (lock file {})", out,
                                         n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "unknown", path_));
        }
        throw InputError(fmt::format("--out {}: cannot lock {}: {}", out, path_, std::strerror(err)));
    }
    // The pid only serves the other run's message: if it cannot be written, the lock holds all the same.
    const std::string pid = std::to_string(::getpid());
    [[maybe_unused]] const bool written =
        ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
}

OutputLock::~OutputLock() { ::close(fd_); }

}  // namespace charlm
