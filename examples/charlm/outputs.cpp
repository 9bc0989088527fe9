// The files a training run writes (--out, its lock, --metrics): checked before anything is trained.
#include "outputs.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>
#include <xgrad/tensor/atomic_file.hpp>

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

std::string parent_folder(const std::string& path) {
    const std::filesystem::path p(path);
    return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}
}  // namespace

void check_output_names(const TrainArgs& args, const Corpus& corpus) {
    namespace fs = std::filesystem;
    const std::string& out = args.out;
    if (out.empty()) throw InputError("--out: the file name is empty");
    if (fs::is_directory(out) || out.back() == '/') throw InputError(fmt::format("--out {}: is a folder, not a file name", out));
    if (!fs::is_directory(parent_folder(out))) {
        throw InputError(fmt::format("--out {}: folder {} does not exist", out, parent_folder(out)));
    }
    // --out over the corpus would replace the text with a checkpoint; --metrics over the checkpoint being
    // resumed would append CSV rows to it (--out over that checkpoint is how training goes on). A file
    // written into a corpus folder (the checkpoint, its lock, its temporary files, the metrics) would
    // become part of the text the next time.
    const bool folder = fs::is_directory(args.corpus);
    auto refuse_inputs = [&](const std::string& flag, const std::string& path, bool resumed_too) {
        for (const std::string& file : corpus.files) {
            if (same_file(path, file)) throw InputError(fmt::format("{} {}: it is the corpus ({}), which it would overwrite", flag, path, file));
        }
        if (folder && same_file(parent_folder(path), args.corpus)) {
            throw InputError(fmt::format("{} {}: it is inside the corpus folder {}, whose files are all read as text", flag, path, args.corpus));
        }
        if (resumed_too && !args.resume.empty() && same_file(path, args.resume)) {
            throw InputError(fmt::format("{} {}: it is the --resume checkpoint ({}), which it would overwrite", flag, path, args.resume));
        }
    };
    refuse_inputs("--out", out, false);
    refuse_inputs("--out", OutputLock::path_for(resolve_output(out)), true);
    if (args.metrics.empty()) return;
    refuse_inputs("--metrics", args.metrics, true);
    if (same_file(out, args.metrics) || same_file(OutputLock::path_for(resolve_output(out)), args.metrics)) {
        throw InputError(fmt::format("--metrics {}: it is the --out checkpoint or its lock ({})", args.metrics, out));
    }
}

std::string resolve_output(const std::string& out) {
    namespace fs = std::filesystem;
    fs::path target = out;
    std::error_code ec;
    for (int links = 0; fs::is_symlink(fs::symlink_status(target, ec)); ++links) {
        if (links == 40) throw InputError(fmt::format("--out {}: more than 40 symbolic links in a row (a loop?)", out));
        const fs::path next = fs::read_symlink(target, ec);
        if (ec) throw InputError(fmt::format("--out {}: cannot read the link {}: {}", out, target.string(), ec.message()));
        target = next.is_absolute() ? next : target.parent_path() / next;
    }
    struct stat st {};
    if (::stat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1) {
        throw InputError(fmt::format("--out {}: the file has {} names (hard links); saving replaces it, which would leave the "
                                     "other names with the old file: give a file with one name", out, st.st_nlink));
    }
    return target.string();
}

MetricsFile::MetricsFile(const std::string& path, bool fresh) : path_(path) {
    // Not truncated on opening: the file may be another run's, which the lock finds out first.
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw InputError(fmt::format("--metrics {}: cannot open it for writing: {}", path, std::strerror(errno)));
    struct stat st {};
    // A device or a pipe (/dev/null, /dev/stdout) is written as it is: it has no length to cut back,
    // and a lock on /dev/null would be one for every run on the machine.
    regular_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
    auto fail = [&](const std::string& what) {
        const int err = errno;
        ::close(fd_);
        throw InputError(err == EWOULDBLOCK ? fmt::format("--metrics {}: another run is writing it", path)
                                            : fmt::format("--metrics {}: cannot {}: {}", path, what, std::strerror(err)));
    };
    if (regular_ && ::flock(fd_, LOCK_EX | LOCK_NB) != 0) fail("lock it");
    if (regular_ && fresh && ::ftruncate(fd_, 0) != 0) fail("empty it");
    if (fresh) {
        try {
            append("step,train_loss,train_bpc,val_bpc,chars_per_s,elapsed_s\n");
        } catch (...) {
            ::close(fd_);
            throw;
        }
    }
}

MetricsFile::~MetricsFile() { ::close(fd_); }

void MetricsFile::append(const std::string& line) {
    const off_t before = regular_ ? ::lseek(fd_, 0, SEEK_END) : -1;
    for (std::size_t done = 0; done < line.size();) {
        const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int err = n < 0 ? errno : EIO;
            if (before >= 0) [[maybe_unused]] const int cut = ::ftruncate(fd_, before);  // no half row is left
            throw std::runtime_error(fmt::format("--metrics {}: cannot write a row: {}", path_, std::strerror(err)));
        }
        done += static_cast<std::size_t>(n);
    }
}

void probe_output(const std::string& out, const std::string& target) {
    try {
        xgrad::check_atomic_write(target);
    } catch (const std::runtime_error& e) {
        std::string why = e.what();
        if (why.starts_with("write_file_atomic: ")) why.erase(0, std::string_view("write_file_atomic: ").size());
        throw InputError(fmt::format("--out {}: {}", out, why));
    }
}

OutputLock::OutputLock(const std::string& out, const std::string& target) : path_(path_for(target)) {
    // O_NOFOLLOW: a link planted under that name must not make the pid overwrite another file.
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
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
