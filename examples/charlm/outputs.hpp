// The files a training run writes (--out, its lock, --metrics): whatever would fail or do damage
// later is refused before step 1, in one line naming the flag and the path.
#pragma once

#include <string>

#include "corpus.hpp"
#include "training.hpp"

namespace charlm {

// Checks that write nothing, made first: --out is a file name in a folder that exists; no output
// (--out, its lock, --metrics) is one of the run's inputs (a corpus file, the checkpoint being
// resumed, but for --out itself), lies inside a corpus folder, or is the other output. Files are
// compared by device and inode when they exist (links, "./" and hard links alike), else by
// normalized path.
void check_output_names(const TrainArgs& args, const Corpus& corpus);

// --out can be written at the first save: creates and removes the writer's own temporary file and,
// for a new name, the file itself (xgrad::check_atomic_write). Made while holding the OutputLock,
// so that it cannot remove another run's checkpoint. `target` is what resolve_output(out) gave;
// messages name `out`, as the user wrote it.
void probe_output(const std::string& out, const std::string& target);

// The file --out writes: the target of a symbolic link (followed through chains of links, relative
// to each link's folder), so that the checkpoint replaces the file the link names and the link stays;
// else `out` itself. An --out with more than one name (hard links) is refused: replacing it would
// leave the other names with the old checkpoint, and a lock on one name would not guard the others.
std::string resolve_output(const std::string& out);

// --metrics: the CSV a run appends a row to at each evaluation. Locked for the run (flock on the file
// itself, which every name of it, link or hard link, reaches), so two runs never interleave rows; a
// row is written whole or not at all (a failed write is cut back off and raised, naming the file).
class MetricsFile {
  public:
    // Opens `path` (created if missing), locks it, and when `fresh` empties it and writes the header.
    MetricsFile(const std::string& path, bool fresh);
    MetricsFile(const MetricsFile&) = delete;
    MetricsFile& operator=(const MetricsFile&) = delete;
    ~MetricsFile();
    void append(const std::string& line);

  private:
    std::string path_;
    int fd_ = -1;
    bool regular_ = false;  // a file, not a device or a pipe: locked, and cut back after a failed write
};

// An advisory lock (flock) on "<target>.lock" (target: resolve_output(out)), held for the object's lifetime, so two runs never write
// one checkpoint: the second refuses at start, naming the first one's pid. It dies with the
// process, however that ends; the lock file stays.
class OutputLock {
  public:
    OutputLock(const std::string& out, const std::string& target);
    static std::string path_for(const std::string& out) { return out + ".lock"; }
    OutputLock(const OutputLock&) = delete;
    OutputLock& operator=(const OutputLock&) = delete;
    ~OutputLock();

  private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace charlm
