// `mpirun -np 2 xgrad-charlm train` against one process with the same global batch: the same
// parameters (within float rounding: each rank sums its half of the batch, then the allreduce adds
// the halves, where one process sums all rows at once), for every cell and both implementations;
// checkpoints that resume on another number of ranks; and the failures that must end every rank.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <optional>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "charlm_run.hpp"

namespace {
const std::string two_ranks = std::string(XGRAD_MPIRUN) + " -np 2 --oversubscribe --allow-run-as-root";

// The largest difference between two checkpoints (same names), tensor by tensor relative to the
// tensor's own scale: max |a - b| / max |a|, so Adam's second moments (~1e-6) count as much as weights.
double largest_difference(const fs::path& a, const fs::path& b) {
    const auto fa = xgrad::load_safetensors<float>(a.string()), fb = xgrad::load_safetensors<float>(b.string());
    REQUIRE(fa.tensors.size() == fb.tensors.size());
    double worst = 0;
    for (const auto& [name, ta] : fa.tensors) {
        const auto& tb = fb.tensors.at(name);
        REQUIRE(ta.size() == tb.size());
        double scale = 0, difference = 0;
        for (std::size_t i = 0; i < ta.size(); ++i) {
            scale = std::max({scale, static_cast<double>(std::abs(ta.data()[i])), static_cast<double>(std::abs(tb.data()[i]))});
            difference = std::max(difference, static_cast<double>(std::abs(ta.data()[i] - tb.data()[i])));
        }
        if (scale > 0) worst = std::max(worst, difference / scale);
    }
    return worst;
}

// The bits per character of a run's "final validation: X bits per character" line.
double final_validation(const std::string& output) {
    const std::string label = "final validation: ";
    const std::size_t at = output.find(label);
    REQUIRE(at != std::string::npos);
    return std::stod(output.substr(at + label.size()));
}

// The text occurs exactly once.
bool once(const std::string& output, const std::string& text) {
    const std::size_t at = output.find(text);
    return at != std::string::npos && at == output.rfind(text);
}

std::string config(const std::string& cell, const std::string& impl, std::size_t steps, const std::string& optimizer = "adam") {
    return fmt::format("train --corpus {} --cell {} --impl {} --hidden 16 --seq 12 --batch 8 --layers 2 --eval-every 4 --threads 1 "
                       "--optimizer {} --steps {}", small_corpus().string(), cell, impl, optimizer, steps);
}
}  // namespace

// Tolerance: 1e-4 of each tensor's scale after 8 steps. The two runs differ only in the order of
// float additions (measured: at most 5.1e-7); a rank on the wrong streams, or gradients not averaged,
// differ by 1e-1 and more (measured by disabling the average). SGD is in the grid because Adam's
// update is blind to the gradients' scale: averaged twice or summed, only SGD's parameters show it.
TEST_CASE("two ranks train to the parameters one process does, for RNN, LSTM and GRU, graph and fused") {
    struct Case {
        const char *cell, *impl, *optimizer;
    };
    for (const Case c : {Case{"rnn", "graph", "adam"}, Case{"rnn", "fused", "adam"}, Case{"lstm", "graph", "adam"},
                         Case{"lstm", "fused", "adam"}, Case{"gru", "graph", "adam"}, Case{"gru", "fused", "adam"},
                         Case{"lstm", "fused", "sgd"}}) {
        CAPTURE(c.cell);
        CAPTURE(c.impl);
        CAPTURE(c.optimizer);
        const fs::path one = scratch() / fmt::format("one_{}_{}_{}.safetensors", c.cell, c.impl, c.optimizer);
        const fs::path two = scratch() / fmt::format("two_{}_{}_{}.safetensors", c.cell, c.impl, c.optimizer);
        const Run single = run(config(c.cell, c.impl, 8, c.optimizer) + " --out " + one.string());
        REQUIRE_MESSAGE(single.code == 0, single.output);
        const Run split = run_with(two_ranks, config(c.cell, c.impl, 8, c.optimizer) + " --out " + two.string());
        REQUIRE_MESSAGE(split.code == 0, split.output);
        CHECK(split.output.find("2 ranks, 4 streams each") != std::string::npos);
        CHECK(once(split.output, "final validation"));  // rank 0 alone prints
        // Validation is shared out between the ranks and summed: the same bits per character (as printed, to 4 decimals).
        CHECK(std::abs(final_validation(split.output) - final_validation(single.output)) < 1e-4);
        const double difference = largest_difference(one, two);
        MESSAGE(fmt::format("{} {} {}: largest difference {:.2e} of a tensor's scale", c.cell, c.impl, c.optimizer, difference));
        CHECK(difference < 1e-4);
    }
}

TEST_CASE("with dropout the ranks draw masks of their own, the same in every run of the same seed") {
    const fs::path a = scratch() / "dropout_a.safetensors", b = scratch() / "dropout_b.safetensors", one = scratch() / "dropout_1.safetensors";
    const std::string dropout = config("gru", "graph", 4) + " --dropout 0.3";
    // Pinned: GEMMs chosen by timing could differ from run to run in the last bits.
    const std::string pinned = two_ranks + " -x XGRAD_GEMM_PROVIDER=openblas";
    REQUIRE(run_with(pinned, dropout + " --out " + a.string()).code == 0);
    REQUIRE(run_with(pinned, dropout + " --out " + b.string()).code == 0);
    CHECK(largest_difference(a, b) == 0.0);  // reproducible
    REQUIRE(run(dropout + " --out " + one.string()).code == 0);
    // Dropout is on: one process draws all 8 streams' masks from one generator, two ranks 4 each
    // from their own, so the runs part (where without dropout they agree to 5.1e-7).
    CHECK(largest_difference(a, one) > 1e-4);
}

TEST_CASE("a checkpoint resumes on another number of ranks, continuing the same run") {
    const fs::path straight = scratch() / "straight.safetensors", halves = scratch() / "halves.safetensors",
                   back = scratch() / "back.safetensors";
    REQUIRE(run(config("lstm", "fused", 8) + " --out " + straight.string()).code == 0);
    // 4 steps on two ranks, then 4 more in one process ...
    REQUIRE(run_with(two_ranks, config("lstm", "fused", 4) + " --out " + halves.string()).code == 0);
    const Run resumed = run(config("lstm", "fused", 8) + " --resume " + halves.string() + " --out " + halves.string());
    REQUIRE_MESSAGE(resumed.code == 0, resumed.output);
    CHECK(largest_difference(straight, halves) < 1e-5);
    // ... and 4 in one process, then 4 more on two ranks.
    REQUIRE(run(config("lstm", "fused", 4) + " --out " + back.string()).code == 0);
    const Run split = run_with(two_ranks, config("lstm", "fused", 8) + " --resume " + back.string() + " --out " + back.string());
    REQUIRE_MESSAGE(split.code == 0, split.output);
    CHECK(largest_difference(straight, back) < 1e-5);
}

TEST_CASE("bad input on every rank is one message and exit 1, and a batch the ranks cannot split is refused") {
    const Run odd = run_with(two_ranks, config("gru", "fused", 2) + " --batch 7 --out " + (scratch() / "odd.safetensors").string());
    CAPTURE(odd.output);
    CHECK(odd.code == 1);
    CHECK(once(odd.output, "--batch 7 is not divisible by the 2 ranks"));  // once, not once per rank
    const Run missing = run_with(two_ranks, "train --corpus /no/such/corpus --out " + (scratch() / "m.safetensors").string());
    CHECK(missing.code == 1);
    CHECK(once(missing.output, "/no/such/corpus"));
    const Run flags = run_with(two_ranks, config("gru", "fused", 2) + " --zoneout 0.1 --checkpoint-segment 4 --out " +
                                              (scratch() / "flags.safetensors").string());
    CHECK(flags.code == 1);
    CHECK(once(flags.output, "xgrad-charlm: train: checkpointed activations do not combine with zoneout"));
    CHECK_FALSE(fs::exists(scratch() / "flags.safetensors"));
    // Rank 1 reads a text of the same length and vocabulary, two characters swapped: refused, naming both.
    const std::string text = read(small_corpus());
    std::string swapped = text;
    std::swap(swapped[100], swapped[101] == swapped[100] ? swapped[102] : swapped[101]);
    write(scratch() / "rank0.txt", text);
    write(scratch() / "rank1.txt", swapped);
    const fs::path chooser = scratch() / "corpus_by_rank.sh";
    write(chooser, fmt::format("exec {} train --corpus {}/rank$OMPI_COMM_WORLD_RANK.txt \"$@\"\n", XGRAD_CHARLM, scratch().string()));
    const Run different = run_command(two_ranks + " /bin/sh " + chooser.string() + " --hidden 8 --seq 8 --batch 2 --steps 2 --out " +
                                      (scratch() / "d.safetensors").string());
    CAPTURE(different.output);
    CHECK(different.code == 1);
    CHECK(once(different.output, "every rank must read the same --corpus and --resume, with the same flags"));
    CHECK(different.output.find("rank 1 starts from") != std::string::npos);
    // The same text, but rank 1 validates on another schedule: its evaluations would meet other collectives.
    const fs::path schedule = scratch() / "eval_by_rank.sh";
    write(schedule, fmt::format("exec {} \"$@\" --eval-every $((OMPI_COMM_WORLD_RANK + 3))\n", XGRAD_CHARLM));
    const Run scheduled = run_command(two_ranks + " /bin/sh " + schedule.string() + " " + config("gru", "fused", 6) + " --out " +
                                      (scratch() / "s.safetensors").string());
    CAPTURE(scheduled.output);
    CHECK(scheduled.code == 1);
    CHECK(once(scheduled.output, "every rank must read the same --corpus and --resume, with the same flags"));
    const Run sample = run_with(two_ranks, "sample --checkpoint /no/such/checkpoint.safetensors");
    CHECK(sample.code == 1);
    CHECK(once(sample.output, "only train runs under mpirun"));
}

namespace {
std::vector<int> ranks_of(pid_t mpirun);

// mpirun started in its own process group, and killed with its ranks (which it may place in groups
// of their own) if the test leaves before it ended.
class Job {
  public:
    explicit Job(const std::string& command) : pid_(::fork()) {
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::setpgid(0, 0);
            ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::setpgid(pid_, pid_);
    }
    ~Job() {
        if (!ended_) {
            for (int rank : ranks_of(pid_)) ::kill(rank, SIGKILL);
            ::kill(-pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }
    // The exit status within `seconds`, or nothing.
    std::optional<int> wait(int seconds) {
        for (int i = 0; i < seconds * 10 && !ended_; ++i) {
            ended_ = ::waitpid(pid_, &status_, WNOHANG) == pid_;
            if (!ended_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (!ended_) return std::nullopt;
        return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    }

  private:
    pid_t pid_;
    int status_ = 0;
    bool ended_ = false;
};

// The ranks of a job: mpirun's children running the program.
std::vector<int> ranks_of(pid_t mpirun) {
    FILE* p = ::popen(fmt::format("pgrep -P {} -f '^{} train'", mpirun, XGRAD_CHARLM).c_str(), "r");
    std::vector<int> pids;
    int pid = 0;
    while (p && std::fscanf(p, "%d", &pid) == 1) pids.push_back(pid);
    if (p) ::pclose(p);
    return pids;
}

// Whether a process exists and is not a zombie (a killed child of a finished mpirun may wait as a
// zombie for a parent that never reaps it).
bool running(int pid) {
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string text;
    if (!std::getline(stat, text)) return false;
    const std::size_t close = text.rfind(')');
    return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

// Starts a long 2-rank run writing its output to `log`, and waits until both ranks train.
std::vector<int> start_training(Job& job, const fs::path& log) {
    std::vector<int> ranks;
    for (int i = 0; i < 300 && (ranks.size() < 2 || read(log).find("training on") == std::string::npos); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ranks = ranks_of(job.pid());
    }
    REQUIRE_MESSAGE(ranks.size() == 2, read(log));
    return ranks;
}
}  // namespace

TEST_CASE("a rank killed mid-run ends the whole job with a non-zero status, never a hang") {
    const fs::path log = scratch() / "killed.log";
    Job job(fmt::format("exec {} {} {} --out {} > {} 2>&1", two_ranks, XGRAD_CHARLM, config("lstm", "fused", 1000000),
                        (scratch() / "killed.safetensors").string(), log.string()));
    const std::vector<int> ranks = start_training(job, log);
    ::kill(ranks.back(), SIGKILL);  // one of the two ranks
    const std::optional<int> status = job.wait(60);
    CAPTURE(read(log));
    REQUIRE_MESSAGE(status.has_value(), "the job was still running 60 s after a rank was killed");
    CHECK(*status != 0);
    for (int rank : ranks) CHECK_FALSE(running(rank));  // no rank left behind
}

TEST_CASE("SIGUSR1 to mpirun stops every rank at the same step, saves, and exits 0") {
    const fs::path log = scratch() / "stopped.log", out = scratch() / "stopped.safetensors";
    Job job(fmt::format("exec {} {} {} --out {} > {} 2>&1", two_ranks, XGRAD_CHARLM, config("lstm", "fused", 1000000), out.string(),
                        log.string()));
    start_training(job, log);
    ::kill(job.pid(), SIGUSR1);  // mpirun forwards it to the ranks
    const std::optional<int> status = job.wait(60);
    CAPTURE(read(log));
    REQUIRE(status.has_value());
    CHECK(*status == 0);  // a stop that was asked for and saved: mpirun prints no "job aborted" banner
    CHECK(read(log).find("interrupted: checkpoint saved at step") != std::string::npos);
    CHECK(read(log).find("non-zero") == std::string::npos);
    CHECK(run(fmt::format("sample --checkpoint {} --length 20", out.string())).code == 0);  // a whole checkpoint
}

TEST_CASE("a command line that stops one rank alone stops every rank, named once, never a hang") {
    // Rank 0 is given a good command; rank 1 the same with one thing wrong, which it alone sees.
    const std::string good = config("rnn", "fused", 3) + " --out " + (scratch() / "alone.safetensors").string();
    const std::vector<std::pair<std::string, std::string>> cases = {
        {good + " --bogus", "rank 1: The following argument was not expected: --bogus"},  // a parse error
        {good + " --lr -1", "rank 1: --lr: Value -1 not in range"},                        // a check of a flag (the last --lr counts)
        {good + " --checkpoint-segment 2 --zoneout 0.5", "rank 1: train: checkpointed activations do not combine with zoneout"},
        {"eval --checkpoint c.safetensors --corpus c.txt", "rank 1: eval runs in one process: only train runs under mpirun"},
        {good + " --help", "rank 1: --help, but not on every rank"},
        {good + " --corpus /no/such/corpus.txt", "rank 1: corpus /no/such/corpus.txt: no such file"},  // preparation
    };
    for (const auto& [rank1, expected] : cases) {
        CAPTURE(rank1);
        const fs::path log = scratch() / "alone.log";
        Job job(fmt::format("exec {} --oversubscribe --allow-run-as-root -np 1 {} {} : -np 1 {} {} > {} 2>&1", XGRAD_MPIRUN,
                            XGRAD_CHARLM, good, XGRAD_CHARLM, rank1, log.string()));
        const std::optional<int> status = job.wait(60);
        const std::string output = read(log);
        CAPTURE(output);
        REQUIRE_MESSAGE(status.has_value(), "the job was still running after 60 s");
        CHECK(*status == 1);
        CHECK(once(output, expected));
        CHECK(once(output, "rank 1: "));
    }
}

TEST_CASE("--collective-timeout ends the job when a rank stops answering (SIGSTOP)") {
    const fs::path log = scratch() / "stuck.log";
    Job job(fmt::format("exec {} {} {} --collective-timeout 3 --out {} > {} 2>&1", two_ranks, XGRAD_CHARLM, config("lstm", "fused", 1000000),
                        (scratch() / "stuck.safetensors").string(), log.string()));
    const std::vector<int> ranks = start_training(job, log);
    ::kill(ranks.back(), SIGSTOP);  // the other rank waits for it in the next collective
    const std::optional<int> status = job.wait(60);
    CAPTURE(read(log));
    REQUIRE_MESSAGE(status.has_value(), "the job was still running 60 s after a rank was stopped");
    CHECK(*status != 0);
    // The rank that waited says so (the stopped one, sent SIGCONT and SIGTERM by mpirun, may say it too).
    CHECK(read(log).find("waited 3 s for the other ranks") != std::string::npos);
    for (int rank : ranks) CHECK_FALSE(running(rank));
}
