// Times one char-LM training step (one-hot -> RNN/LSTM/GRU -> Linear -> cross-entropy, forward,
// backward and SGD) in xgrad's graph and fused paths and, when installed, libtorch, in the same
// run; prints medians, GFLOP/s, that as a share of the machine's FMA peak and of the sgemm rate
// measured in the same run, peak heap, and the ratios to libtorch. See BENCHMARKS.md.
//
//   bench_rnn                         # S, M, L for RNN; M, L for LSTM and GRU; 1 and 2 BLAS threads
//   bench_rnn --configs M --cells rnn --threads 1
//   bench_rnn --scaling               # time and memory as T and H grow
//   bench_rnn --layer --configs M,L   # the layer alone against oneDNN's RNN primitives and libtorch
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/format.h>
#include <xgrad/xgrad.hpp>

#include "fma_peak.hpp"
#include "heap_meter.hpp"
#include "steps.hpp"

namespace {
using clock_type = std::chrono::steady_clock;

struct Config {
    std::string name;
    std::size_t vocab, hidden, steps, batch;
};

const std::map<std::string, Config> configs = {
    {"S", {"S", 96, 100, 25, 1}}, {"M", {"M", 96, 256, 64, 32}}, {"L", {"L", 96, 512, 128, 64}}};

struct Timing {
    double median_ms = 0;
    double peak_mb = 0;
};

Timing measure(bench::Trainer& trainer, int warmup, int reps) {
    const std::size_t baseline = bench::heap_in_use();
    bench::reset_peak_heap();
    for (int i = 0; i < warmup; ++i) trainer.step();
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
        const auto start = clock_type::now();
        trainer.step();
        ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    return {ms[ms.size() / 2], static_cast<double>(bench::peak_heap() - baseline) / 1e6};
}

// Multiply-adds of one training step, counted as 2 flops each: forward (input, recurrent and
// output GEMMs) and backward (their weight gradients, the recurrent and output input-gradients).
double step_gflop(const bench::Problem& p) {
    const double G = static_cast<double>(xgrad::nn::make_cell<float>(p.cell)->gates());
    const double V = static_cast<double>(p.vocab), H = static_cast<double>(p.hidden);
    const double rows = static_cast<double>(p.steps * p.batch);
    return 2 * rows * (2 * V * G * H + 3 * H * G * H + 3 * H * V) / 1e9;
}

double sgemm_gflops(std::size_t n) {
    xgrad::Generator gen(1);
    xgrad::Tensor<float> a = xgrad::uniform<float>({n, n}, -1, 1, gen), b = a, c = a;
    std::vector<double> rates;
    for (int i = 0; i < 9; ++i) {
        const auto start = clock_type::now();
        xgrad::gemm(false, false, 1.0f, a, b, 0.0f, c);
        const double s = std::chrono::duration<double>(clock_type::now() - start).count();
        rates.push_back(2.0 * static_cast<double>(n * n * n) / s / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const std::size_t end = std::min(s.find(',', start), s.size());
        if (end > start) out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

int reps_for(const std::string& config) { return config == "S" ? 200 : config == "M" ? 21 : 7; }

// libtorch's best here is 1 intra-op thread over OpenBLAS's own threads; xgrad's and oneDNN's GEMMs
// run on OpenMP threads. libtorch shares the process's OpenMP runtime, so setting its intra-op
// threads sets everyone's: each implementation gets its threads just before it is timed.
// Thread count 0 ("--threads auto") leaves every library its defaults: xgrad's governor chooses.
void threads_for_torch(int threads) {
    if (threads == 0) return;
    openblas_set_num_threads(threads);  // libtorch's GEMMs run on OpenBLAS's own pool (xgrad's keeps it at 1)
    bench::set_torch_threads(1);
}

void threads_for_ours(int threads) {
    if (threads > 0) xgrad::set_blas_threads(threads);
}

// "1 thread", "2 threads", or for 0 the default count, governed.
std::string threads_label(int threads) {
    if (threads == 0) return fmt::format("the default {} BLAS threads, governed (libtorch: its defaults)", xgrad::blas_threads());
    return fmt::format("{} BLAS thread{} (libtorch: 1 intra-op thread)", threads, threads > 1 ? "s" : "");
}

// Which implementations the tables time (--implementations): all unless narrowed, e.g. to time
// each in its own process (bench/alternate.sh) or profile one alone. oneDNN's RNN primitives are in
// the layer table only.
struct Implementations {
    bool torch = true, graph = true, fused = true, onednn = true;
    std::vector<bool> xgrad_paths() const {  // the `fused` argument of make_xgrad, graph first
        std::vector<bool> out;
        if (graph) out.push_back(false);
        if (fused) out.push_back(true);
        return out;
    }
};
Implementations implementations;

void run_table(const std::vector<std::string>& config_names, const std::vector<std::string>& cells, int threads,
               const bench::Peak& core) {
    threads_for_ours(threads);
    const int cores = threads > 0 ? threads : xgrad::blas_threads();
    const double sgemm = sgemm_gflops(1024), peak = core.gflops * cores;
    fmt::print("\n## {}; sgemm 1024^3 in this run: {:.1f} GFLOP/s; FMA peak ({}, {} core{}): {:.1f} GFLOP/s\n\n",
               threads_label(threads), sgemm, core.isa, cores, cores > 1 ? "s" : "", peak);
    fmt::print("| config | cell | implementation | median ms/step | GFLOP/s | % of peak | % of sgemm | peak heap MB | time vs libtorch |\n");
    fmt::print("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (const std::string& name : config_names) {
        const Config& c = configs.at(name);
        for (const std::string& cell : cells) {
            if (cell != "rnn" && name == "S") continue;  // LSTM and GRU at M and L only
            const bench::Problem p{cell, c.vocab, c.hidden, c.steps, c.batch};
            const int reps = reps_for(name), warmup = name == "S" ? 20 : 2;
            std::optional<Timing> torch;
            threads_for_torch(threads);
            if (auto t = implementations.torch ? bench::make_torch(p) : nullptr) torch = measure(*t, warmup, reps);
            threads_for_ours(threads);
            auto row = [&](const std::string& impl, const Timing& t) {
                const double gflops = step_gflop(p) / (t.median_ms / 1e3);
                fmt::print("| {} (V {}, H {}, T {}, B {}) | {} | {} | {:.3f} | {:.1f} | {:.0f}% | {:.0f}% | {:.1f} | {} |\n", name,
                           c.vocab, c.hidden, c.steps, c.batch, cell, impl, t.median_ms, gflops, 100 * gflops / peak,
                           100 * gflops / sgemm, t.peak_mb,
                           torch ? fmt::format("{:.2f}x", t.median_ms / torch->median_ms) : "-");
                std::fflush(stdout);
            };
            if (torch) row("libtorch " + bench::torch_version(), *torch);
            for (bool fused : implementations.xgrad_paths()) {
                auto trainer = bench::make_xgrad(p, fused);
                row(fused ? "xgrad fused" : "xgrad graph", measure(*trainer, warmup, reps));
            }
        }
    }
}

// The recurrent layer alone (dense input, forward + backward) against oneDNN's RNN training
// primitives, the anchor, and libtorch, in the same run.
void run_layer_table(const std::vector<std::string>& config_names, const std::vector<std::string>& cells, int threads,
                     const bench::Peak& core) {
    const double peak = core.gflops * threads;
    fmt::print("\n## The layer step alone (dense input, forward + backward), {} thread{}; FMA peak {:.1f} GFLOP/s; "
               "oneDNN {}\n\n", threads, threads > 1 ? "s" : "", peak, bench::onednn_version());
    fmt::print("| config | cell | implementation | median ms/step | GFLOP/s | % of peak | time vs oneDNN | time vs libtorch |\n");
    fmt::print("|---|---|---|---:|---:|---:|---:|---:|\n");
    for (const std::string& name : config_names) {
        const Config& c = configs.at(name);
        for (const std::string& cell : cells) {
            if (cell != "rnn" && name == "S") continue;
            const bench::Problem p{cell, c.vocab, c.hidden, c.steps, c.batch};
            const int reps = reps_for(name), warmup = name == "S" ? 20 : 2;
            // Multiply-adds: forward input and recurrent GEMMs; backward their weight gradients, the
            // recurrent and the input gradients.
            const double G = static_cast<double>(xgrad::nn::make_cell<float>(cell)->gates());
            const double rows = static_cast<double>(c.steps * c.batch), V = static_cast<double>(c.vocab), H = static_cast<double>(c.hidden);
            const double gflop = 2 * rows * (3 * V * G * H + 3 * H * G * H) / 1e9;
            std::optional<Timing> onednn, torch;
            threads_for_torch(threads);
            if (auto t = implementations.torch ? bench::make_torch_layer(p) : nullptr) torch = measure(*t, warmup, reps);
            threads_for_ours(threads);
            if (auto t = implementations.onednn ? bench::make_onednn_layer(p) : nullptr) onednn = measure(*t, warmup, reps);
            auto row = [&](const std::string& impl, const Timing& t) {
                const double rate = gflop / (t.median_ms / 1e3);
                fmt::print("| {} (I {}, H {}, T {}, B {}) | {} | {} | {:.3f} | {:.1f} | {:.0f}% | {} | {} |\n", name, c.vocab, c.hidden,
                           c.steps, c.batch, cell, impl, t.median_ms, rate, 100 * rate / peak,
                           onednn ? fmt::format("{:.2f}x", t.median_ms / onednn->median_ms) : "-",
                           torch ? fmt::format("{:.2f}x", t.median_ms / torch->median_ms) : "-");
                std::fflush(stdout);
            };
            if (onednn) row("oneDNN " + bench::onednn_version(), *onednn);
            if (torch) row("libtorch " + bench::torch_version(), *torch);
            for (bool fused : implementations.xgrad_paths()) {
                auto trainer = bench::make_xgrad_layer(p, fused);
                row(fused ? "xgrad fused" : "xgrad graph", measure(*trainer, warmup, reps));
            }
        }
    }
}

// Checkpointed BPTT against the whole sequence, as T grows: the char-LM step's loss in segments of
// k = √T steps (rounded to a power of two), each segment's layer, head and loss one checkpoint node.
void run_checkpointing(int threads) {
    xgrad::set_blas_threads(threads);
    fmt::print("\n## Checkpointed BPTT (RNN, H 256, B 32, {} thread{}): peak heap and time per training step\n\n", threads,
               threads > 1 ? "s" : "");
    fmt::print("| T | k | fused MB | fused, checkpointed MB | fused ms | fused, checkpointed ms | graph MB | graph, checkpointed MB | "
               "graph ms | graph, checkpointed ms |\n");
    fmt::print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (std::size_t T = 256; T <= 16384; T *= 4) {
        std::size_t k = 1;
        while (k * k < T) k *= 2;
        std::optional<Timing> t[2][2];  // [fused, graph][whole, checkpointed]
        for (int path = 0; path < 2; ++path) {
            for (int segmented = 0; segmented < 2; ++segmented) {
                auto trainer = bench::make_xgrad(bench::Problem{"rnn", 96, 256, T, 32, segmented ? k : 0}, path == 0);
                t[path][segmented] = measure(*trainer, 1, T >= 4096 ? 3 : 5);
            }
        }
        auto mb = [](const std::optional<Timing>& x) { return x ? fmt::format("{:.1f}", x->peak_mb) : std::string("-"); };
        auto ms = [](const std::optional<Timing>& x) { return x ? fmt::format("{:.1f}", x->median_ms) : std::string("-"); };
        fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", T, k, mb(t[0][0]), mb(t[0][1]), ms(t[0][0]), ms(t[0][1]),
                   mb(t[1][0]), mb(t[1][1]), ms(t[1][0]), ms(t[1][1]));
        std::fflush(stdout);
    }
}

void run_scaling(int threads) {
    xgrad::set_blas_threads(threads);
    fmt::print("\n## Scaling (RNN, {} BLAS thread{}): time and peak heap per training step\n\n", threads, threads > 1 ? "s" : "");
    fmt::print("| T | H | B | graph ms | fused ms | graph peak MB | fused peak MB | graph MB per step of T |\n");
    fmt::print("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    auto line = [](std::size_t T, std::size_t H, std::size_t B) {
        const bench::Problem p{"rnn", 96, H, T, B};
        const int reps = T * H >= 4096 * 256 ? 3 : 5;
        auto g = bench::make_xgrad(p, false);
        const Timing graph = measure(*g, 1, reps);
        g.reset();
        auto f = bench::make_xgrad(p, true);
        const Timing fused = measure(*f, 1, reps);
        fmt::print("| {} | {} | {} | {:.2f} | {:.2f} | {:.1f} | {:.1f} | {:.3f} |\n", T, H, B, graph.median_ms, fused.median_ms,
                   graph.peak_mb, fused.peak_mb, graph.peak_mb / static_cast<double>(T));
        std::fflush(stdout);
    };
    for (std::size_t T = 32; T <= 4096; T *= 2) line(T, 256, 32);
    for (std::size_t H : {64, 128, 512, 1024}) line(64, H, 32);
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Time a char-LM training step in xgrad (graph and fused) and libtorch, side by side."};
    std::string config_list = "S,M,L", cell_list = "rnn,lstm,gru", thread_list = "1,2";
    bool scaling = false, layer = false;
    app.add_option("--configs", config_list, "of S, M, L")->capture_default_str();
    app.add_option("--cells", cell_list, "of rnn, lstm, gru")->capture_default_str();
    app.add_option("--threads", thread_list, "BLAS thread counts to run; auto: the default count, governed (char-LM table)")
        ->capture_default_str();
    std::string implementation_list = "torch,graph,fused,onednn";
    app.add_option("--implementations", implementation_list, "of torch, graph, fused, onednn (oneDNN's RNN primitives: the layer table only)")
        ->capture_default_str();
    app.add_flag("--scaling", scaling, "only the scaling tables (T and H growing), at the first thread count");
    bool checkpointing = false;
    app.add_flag("--checkpointing", checkpointing, "only the checkpointed-BPTT table (T from 256 to 16384), at the first thread count");
    app.add_flag("--layer", layer, "only the layer step (dense input) against oneDNN's RNN primitives and libtorch");
    CLI11_PARSE(app, argc, argv);
    const auto names = split(config_list), cells = split(cell_list), threads = split(thread_list);
    implementations = {false, false, false, false};
    for (const auto& i : split(implementation_list)) {
        if (i == "torch") implementations.torch = true;
        else if (i == "graph") implementations.graph = true;
        else if (i == "fused") implementations.fused = true;
        else if (i == "onednn") implementations.onednn = true;
        else {
            fmt::print(stderr, "bench_rnn: unknown implementation '{}' (torch, graph, fused, onednn)\n", i);
            return 2;
        }
    }
    for (const auto& n : names) {
        if (!configs.count(n)) {
            fmt::print(stderr, "bench_rnn: unknown config '{}' (S, M, L)\n", n);
            return 2;
        }
    }
    // For every library in the process alike: freed activations stay in the heap for the next step.
    xgrad::keep_freed_memory();
    fmt::print("# xgrad char-LM training step{}\n", bench::have_torch() ? ", against libtorch " + bench::torch_version()
                                                                        : " (libtorch not installed: xgrad alone)");
    fmt::print("\nxgrad's GEMMs: {}; freed memory kept for reuse (xgrad::keep_freed_memory)\n", xgrad::gemm_provider());
    if (checkpointing) {
        run_checkpointing(std::stoi(threads.at(0)));
        return 0;
    }
    if (scaling) {
        run_scaling(std::stoi(threads.at(0)));
        return 0;
    }
    const bench::Peak core = bench::fma_peak();  // one core; a table at n threads compares with n cores
    for (const auto& t : threads) {
        if (layer) {
            run_layer_table(names, cells, std::stoi(t), core);
        } else {
            run_table(names, cells, t == "auto" ? 0 : std::stoi(t), core);
        }
    }
    fmt::print("\nxgrad's threads: {}\n", xgrad::thread_governor_state());
    fmt::print("\nxgrad's GEMM choices (per shape, with the times measured; /1: one thread):\n\n```\n{}```\n", xgrad::gemm_choices());
    return 0;
}
