// Shared by the xgrad-charlm test programs: a scratch folder, text to train on, and real runs of
// the program (XGRAD_CHARLM) with their exit status and output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <doctest/doctest.h>
#include <fmt/format.h>

namespace fs = std::filesystem;

inline fs::path scratch() {
    static const fs::path dir = [] {
        fs::path d = fs::temp_directory_path() / fmt::format("xgrad_test_charlm_{}", ::getpid());
        fs::remove_all(d);  // left by an earlier process with the same (reused) pid: start clean
        fs::create_directories(d);
        return d;
    }();
    return dir;
}

inline void write(const fs::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Deterministic English-like text of about n characters, with a few non-ASCII letters.
inline std::string words(std::size_t n, unsigned seed = 1) {
    const char* vocab[] = {"the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "dog ", "ran ", "café ", "naïve ", "\n"};
    std::mt19937 rng(seed);
    std::string out;
    while (out.size() < n) out += vocab[rng() % 12];
    return out;
}

struct Run {
    int code;
    std::string output;  // stdout and stderr together
};

// A shell command's exit status and output (stdout and stderr together).
inline Run run_command(const std::string& command_line) {
    const std::string command = command_line + " 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[4096];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
    const int status = ::pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

// xgrad-charlm with these arguments, started by `launcher` (e.g. "mpirun -np 2") or directly.
inline Run run_with(const std::string& launcher, const std::string& args) {
    return run_command(fmt::format("{} {} {}", launcher, XGRAD_CHARLM, args));
}

inline Run run(const std::string& args) { return run_with("", args); }

// A tiny configuration that trains in a fraction of a second.
inline const std::string tiny = "--hidden 12 --seq 8 --batch 4 --eval-every 5";

inline fs::path small_corpus() {
    const fs::path p = scratch() / "small.txt";
    if (!fs::exists(p)) write(p, words(6000));
    return p;
}

// True, with a message saying the test is skipped, where gnuplot (which plot runs) is not installed.
inline bool gnuplot_missing() {
    if (std::system("command -v gnuplot > /dev/null 2>&1") == 0) return false;
    MESSAGE("skipped: gnuplot is not installed (scripts/setup.sh installs gnuplot-nox)");
    return true;
}

// Error output is one line naming the culprit.
inline void expect_refusal(const Run& r, const std::string& needle) {
    CAPTURE(r.output);
    CHECK(r.code != 0);
    CHECK(r.output.find(needle) != std::string::npos);
    CHECK(r.output.find("terminate") == std::string::npos);
}
