// The files a training run writes (--out, its lock, --metrics): whatever would fail or do damage
// later is refused before step 1, in one line naming the flag and the path.
#pragma once

#include <string>

#include "corpus.hpp"
#include "training.hpp"

namespace charlm {

// --out can be written at the first save: not a folder, in a folder that exists, and creatable
// through the writer's own temporary file (xgrad::check_atomic_write).
void check_output_path(const std::string& out);

// No output (--out, --metrics) is one of the run's inputs (a corpus file, the checkpoint being
// resumed, for --metrics) or the other output, compared by device and inode when the files exist
// (links, "./" and hard links alike), else by normalized path. --out may be the resumed checkpoint.
void check_outputs_apart(const TrainArgs& args, const Corpus& corpus);

// An advisory lock (flock) on "<out>.lock", held for the object's lifetime, so two runs never write
// one checkpoint: the second refuses at start, naming the first one's pid. It dies with the
// process, however that ends; the lock file stays.
class OutputLock {
  public:
    explicit OutputLock(const std::string& out);
    OutputLock(const OutputLock&) = delete;
    OutputLock& operator=(const OutputLock&) = delete;
    ~OutputLock();

  private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace charlm
