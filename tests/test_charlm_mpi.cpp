// `mpirun -np 2 xgrad-charlm train` against one process with the same global batch: the same
// parameters (within float rounding: each rank sums its half of the batch, then the allreduce adds
// the halves, where one process sums all rows at once), for every cell and both implementations;
// checkpoints that resume on another number of ranks; and the failures that must end every rank.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "charlm_run.hpp"

namespace {
const std::string two_ranks = std::string(XGRAD_MPIRUN) + " -np 2 --oversubscribe --allow-run-as-root";

// The largest |a - b| over every model and optimizer tensor of two checkpoints, which must hold the same names.
double largest_difference(const fs::path& a, const fs::path& b) {
    const auto fa = xgrad::load_safetensors<float>(a.string()), fb = xgrad::load_safetensors<float>(b.string());
    REQUIRE(fa.tensors.size() == fb.tensors.size());
    double worst = 0;
    for (const auto& [name, ta] : fa.tensors) {
        const auto& tb = fb.tensors.at(name);
        REQUIRE(ta.size() == tb.size());
        for (std::size_t i = 0; i < ta.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(ta.data()[i] - tb.data()[i])));
    }
    return worst;
}

std::string config(const std::string& cell, const std::string& impl, std::size_t steps) {
    return fmt::format("train --corpus {} --cell {} --impl {} --hidden 16 --seq 12 --batch 8 --layers 2 --eval-every 4 --threads 1 --steps {}",
                       small_corpus().string(), cell, impl, steps);
}
}  // namespace

// Tolerance: 1e-5 on values of order 0.1 after 8 Adam steps. The two runs differ only in the order
// of float additions (measured: at most ~1e-7); a rank that used the wrong streams, a gradient not
// averaged or averaged twice moves parameters by ~lr = 2e-3 at the first step.
TEST_CASE("two ranks train to the parameters one process does, for RNN, LSTM and GRU, graph and fused") {
    for (const char* cell : {"rnn", "lstm", "gru"}) {
        for (const char* impl : {"graph", "fused"}) {
            CAPTURE(cell);
            CAPTURE(impl);
            const fs::path one = scratch() / fmt::format("one_{}_{}.safetensors", cell, impl);
            const fs::path two = scratch() / fmt::format("two_{}_{}.safetensors", cell, impl);
            const Run single = run(config(cell, impl, 8) + " --out " + one.string());
            REQUIRE_MESSAGE(single.code == 0, single.output);
            const Run split = run_with(two_ranks, config(cell, impl, 8) + " --out " + two.string());
            REQUIRE_MESSAGE(split.code == 0, split.output);
            CHECK(split.output.find("2 ranks, 4 streams each") != std::string::npos);
            // Rank 0 alone prints: one final line, not two.
            CHECK(split.output.find("final validation") == split.output.rfind("final validation"));
            const double difference = largest_difference(one, two);
            MESSAGE(fmt::format("{} {}: largest difference {:.2e}", cell, impl, difference));
            CHECK(difference < 1e-5);
        }
    }
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
    const std::string needle = "--batch 7 is not divisible by the 2 ranks";
    CHECK(odd.output.find(needle) != std::string::npos);
    CHECK(odd.output.find(needle) == odd.output.rfind(needle));  // once, not once per rank
    const Run missing = run_with(two_ranks, "train --corpus /no/such/corpus --out " + (scratch() / "m.safetensors").string());
    CHECK(missing.code == 1);
    CHECK(missing.output.find("/no/such/corpus") == missing.output.rfind("/no/such/corpus"));
    const Run sample = run_with(two_ranks, "sample --checkpoint " + (scratch() / "straight.safetensors").string());
    CHECK(sample.code == 1);
    CHECK(sample.output.find("only train runs under mpirun") != std::string::npos);
}

TEST_CASE("a rank killed mid-run ends the whole job with a non-zero status, never a hang") {
    const fs::path log = scratch() / "killed.log";
    const std::string command = fmt::format("exec {} {} {} --out {} > {} 2>&1", two_ranks, XGRAD_CHARLM, config("lstm", "fused", 1000000),
                                            (scratch() / "killed.safetensors").string(), log.string());
    const pid_t job = ::fork();
    REQUIRE(job >= 0);
    if (job == 0) {
        ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    // Once both ranks train (rank 0 has printed its first line), kill rank 1's process: the one whose
    // command line starts with the program itself (mpirun's starts with mpirun).
    auto rank_pids = [] {
        FILE* p = ::popen(fmt::format("pgrep -f '^{} train'", XGRAD_CHARLM).c_str(), "r");
        std::vector<int> pids;
        int pid = 0;
        while (p && std::fscanf(p, "%d", &pid) == 1) pids.push_back(pid);
        if (p) ::pclose(p);
        return pids;
    };
    std::vector<int> ranks;
    for (int i = 0; i < 300 && (ranks.size() < 2 || read(log).find("training on") == std::string::npos); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ranks = rank_pids();
    }
    REQUIRE_MESSAGE(ranks.size() == 2, read(log));
    ::kill(ranks.back(), SIGKILL);
    int status = 0;
    bool ended = false;
    for (int i = 0; i < 600 && !ended; ++i) {  // up to 60 s
        ended = ::waitpid(job, &status, WNOHANG) == job;
        if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!ended) {
        for (int pid : rank_pids()) ::kill(pid, SIGKILL);
        ::kill(job, SIGKILL);
        ::waitpid(job, &status, 0);
    }
    CAPTURE(read(log));
    REQUIRE_MESSAGE(ended, "the job was still running 60 s after a rank was killed");
    CHECK((!WIFEXITED(status) || WEXITSTATUS(status) != 0));
    CHECK(rank_pids().empty());  // no rank left behind
}
