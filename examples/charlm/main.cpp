// xgrad-charlm: train a character-level language model on any text, sample it, evaluate it.
//
//   xgrad-charlm train --corpus book.txt --hidden 256 --steps 3000 --out book.safetensors
//   xgrad-charlm sample --checkpoint book.safetensors --prime "The " --length 400
//   xgrad-charlm eval --checkpoint book.safetensors --corpus other.txt
//   xgrad-charlm plot --metrics book.csv --out curve.svg   # train with --metrics book.csv
//   mpirun -np 2 xgrad-charlm train --batch 32 ...      # data parallel: 16 streams per rank
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "../cli_checks.hpp"
#include "../guards.hpp"
#include "training.hpp"
#ifdef XGRAD_CHARLM_MPI
#include "mpi_ranks.hpp"
#endif

namespace {
// What a launcher's environment says (Open MPI's, or PMI's as Slurm and MPICH set it): how many
// ranks it started in all and on this host; 1 when none says.
int launched(const char* open_mpi, const char* pmi) {
    for (const char* name : {open_mpi, pmi}) {
        if (const char* value = std::getenv(name)) return std::max(1, std::atoi(value));
    }
    return 1;
}
int launched_ranks() { return launched("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"); }
#ifdef XGRAD_CHARLM_MPI
static_assert(charlm::TrainArgs::max_collective_timeout == xgrad::dist::ProcessGroup::max_timeout);

int ranks_on_this_host() { return launched("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"); }

// Every rank's command-line outcome made one (a collective every rank reaches before any other):
// when all ranks go on or all stop alike, each keeps its own; when they differ, all stop with status
// 1 and the first rank that stopped is named.
std::optional<examples::CommandLineStop> agreed_stop(const xgrad::dist::ProcessGroup& world,
                                                      const std::optional<examples::CommandLineStop>& mine) {
    // The help's text names the program as each rank was started: a help is a help, whatever it says.
    const std::string outcome = !mine ? "go" : mine->status == 0 ? "0\n" : fmt::format("{}\n{}", mine->status, mine->text);
    const std::vector<std::string> all = world.all_gather(outcome);
    const auto differs = std::find_if(all.begin(), all.end(), [&](const std::string& other) { return other != all[0]; });
    if (differs == all.end()) return mine;
    const auto first_stop = std::find_if(all.begin(), all.end(), [](const std::string& other) { return other != "go"; });
    const auto rank = first_stop - all.begin();
    const std::string text = first_stop->substr(first_stop->find('\n') + 1);
    if (first_stop->starts_with("0\n")) {
        return examples::CommandLineStop{1, fmt::format("rank {}: --help, but not on every rank: every rank must run the same command", rank)};
    }
    return examples::CommandLineStop{1, fmt::format("rank {}: {}", rank, text)};
}
#endif
}  // namespace

int main(int argc, char** argv) {
#ifdef XGRAD_CHARLM_MPI
    // Started by mpirun: one rank of a data-parallel run. Otherwise MPI is never touched.
    std::optional<xgrad::dist::Environment> mpi;
    std::optional<xgrad::dist::ProcessGroup> world;
    if (xgrad::dist::launched_by_mpi()) {
        try {
            mpi.emplace(argc, argv);
            world.emplace();
        } catch (const std::exception& e) {
            fmt::print(stderr, "xgrad-charlm: starting MPI: {}\n", e.what());
            return 1;
        }
    }
    const int rank = world ? world->rank() : 0, ranks = world ? world->size() : 1;
#else
    const int rank = 0, ranks = 1;
#endif
    // Started as N ranks that cannot see each other (a build without MPI, or another MPI's
    // launcher), each would train the whole batch and race for --out.
    if (launched_ranks() > ranks) {
        fmt::print(stderr, "xgrad-charlm: started as one of {} ranks, but it sees {} (built without MPI, or launched by "
                   "another MPI's mpirun)\n", launched_ranks(), ranks);
        return 1;
    }
    // Past a file-size limit (ulimit -f) a write fails and is reported, as on a full disk, instead of
    // the signal ending the process halfway through a file.
    std::signal(SIGXFSZ, SIG_IGN);
    const bool reporting = rank == 0;  // one rank prints what every rank would
    xgrad::keep_freed_memory();  // each step frees and reallocates megabytes: keep them in the heap
    CLI::App app{"Train a character-level language model with xgrad, sample it, evaluate it, and plot its training."};
    app.require_subcommand(1);
    const auto positive = CLI::Range(1, 1 << 30);
    const CLI::Validator finite = examples::finite_number();

    // A flag given twice takes its last value, so scripts can append to a default command line. Set
    // before the subcommands exist: each copies the defaults when it is made.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

    charlm::TrainArgs t;
    auto* train = app.add_subcommand("train", "train a model on a text corpus (checkpointing as it goes)");
    train->add_option("--corpus", t.corpus, "a UTF-8 text file, or a folder of them")->capture_default_str();
    train->add_option("--cell", t.config.cell, "recurrent cell: rnn, lstm or gru")->check(CLI::IsMember(xgrad::nn::recurrent_cell_names()))
        ->capture_default_str();
    train->add_option("--hidden", t.config.hidden, "hidden size")->check(positive)->capture_default_str();
    train->add_option("--layers", t.config.layers, "stacked layers")->check(positive)->capture_default_str();
    train->add_option("--seq", t.config.seq, "characters per stream per step (BPTT length)")->check(positive)->capture_default_str();
    train->add_option("--batch", t.config.batch, "parallel streams")->check(positive)->capture_default_str();
    train->add_option("--steps", t.steps, "train until this many steps in total (default 2000 without --time-limit)")
        ->check(positive);
    train->add_option("--time-limit", t.time_limit, "stop after this many seconds")->check(finite)->check(CLI::PositiveNumber);
    train->add_option("--lr", t.config.lr, "learning rate")->check(finite)->check(CLI::PositiveNumber)->capture_default_str();
    train->add_option("--optimizer", t.config.optimizer, "the optimizer, with torch.optim's update rule and defaults")
        ->check(CLI::IsMember(charlm::optimizer_names()))->capture_default_str();
    train->add_option("--clip", t.config.clip, "clip the global gradient norm to this")->check(finite)->check(CLI::PositiveNumber)->capture_default_str();
    train->add_option("--dropout", t.config.dropout, "dropout between layers, in [0, 1)")->check(finite)->check(CLI::Range(0.0, 0.999999))
        ->capture_default_str();
    train->add_option("--zoneout", t.config.zoneout, "zoneout probability on the recurrent state, in [0, 1)")
        ->check(finite)->check(CLI::Range(0.0, 0.999999))->capture_default_str();
    train->add_option("--variational-dropout", t.config.variational_dropout,
                      "variational dropout (one mask per sequence) on each layer's output and recurrent state, in [0, 1)")
        ->check(finite)->check(CLI::Range(0.0, 0.999999))->capture_default_str();
    train->add_option("--seed", t.config.seed, "random seed")->check(examples::seed_number())->capture_default_str();
    train->add_option("--impl", t.config.impl, "graph (primitive ops) or fused (handwritten BPTT): same numbers")
        ->check(CLI::IsMember({"graph", "fused"}))->capture_default_str();
    train->add_option("--val-fraction", t.config.val_fraction, "the last part of the corpus held out for validation")
        ->check(finite)->check(CLI::Range(0.0, 0.9))->capture_default_str();
    train->add_option("--eval-every", t.eval_every, "validate every N steps (0: only at the end)")->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    train->add_option("--out", t.out, "checkpoint to write")->capture_default_str();
    train->add_option("--save-every", t.save_every, "also checkpoint every N steps (0: only at the end)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    train->add_option("--resume", t.resume, "continue training from this checkpoint");
    train->add_option("--threads", t.threads, "BLAS threads (default: as the environment sets)")->check(CLI::Range(1, 256));
    train->add_option("--metrics", t.metrics, "append a CSV row per evaluation to this file");
    train->add_flag("--checkpoint-activations", t.checkpoint_activations,
                    "keep only the states between segments of ~sqrt(seq) steps and recompute each segment in backward: "
                    "memory O(sqrt(seq)) instead of O(seq), for about a third more time");
    train->add_option("--checkpoint-segment", t.config.checkpoint_segment,
                      "checkpoint activations in segments of this many steps (implies --checkpoint-activations)")
        ->check(positive);
    train->add_option("--collective-timeout", t.collective_timeout,
                      "under mpirun: end the job when a rank has waited this many seconds for the others (0: wait for ever)")
        ->check(finite)->check(CLI::Range(0.0, charlm::TrainArgs::max_collective_timeout))->capture_default_str();
    train->add_flag("--detect-anomaly", t.detect_anomaly,
                    "check every op's output and every gradient for NaN/Inf, naming the op (slower)");

    charlm::SampleArgs s;
    auto* sample = app.add_subcommand("sample", "generate text from a checkpoint");
    sample->add_option("--checkpoint", s.checkpoint, "a checkpoint written by train")->required();
    sample->add_option("--prime", s.prime, "text to start from");
    sample->add_option("--length", s.length, "characters to generate")->check(positive)->capture_default_str();
    sample->add_option("--temperature", s.temperature, "softmax temperature")->check(finite)->check(CLI::PositiveNumber)->capture_default_str();
    // Unsigned options need the sign check: CLI11 would wrap -1 around to the largest value.
    sample->add_option("--top-k", s.top_k, "sample among the k most likely characters (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    sample->add_option("--seed", s.seed, "random seed")->check(examples::seed_number())->capture_default_str();

    charlm::EvalArgs e;
    auto* eval = app.add_subcommand("eval", "bits per character of a checkpoint on a text");
    eval->add_option("--checkpoint", e.checkpoint, "a checkpoint written by train")->required();
    eval->add_option("--corpus", e.corpus, "a UTF-8 text file, or a folder of them")->required();

    charlm::PlotArgs p;
    auto* plot = app.add_subcommand("plot", "draw the training curves of a --metrics CSV (gnuplot)");
    plot->add_option("--metrics", p.metrics, "a CSV written by train --metrics")->required();
    plot->add_option("--out", p.out, "the picture: .svg or .png")->capture_default_str();

    // What the command line asks of this process: go on, or stop with a status and a text.
    const std::string first = argc > 1 ? argv[1] : "";
    std::optional<examples::CommandLineStop> stop = [&]() -> std::optional<examples::CommandLineStop> {
        if (!first.empty() && first[0] != '-' && first != "train" && first != "sample" && first != "eval" && first != "plot") {
            return examples::CommandLineStop{1, fmt::format("unknown command '{}' (train, sample, eval or plot)", first)};  // CLI11 would not name it
        }
        if (auto parsed = examples::read_command_line(app, argc, argv)) return parsed;
        if (ranks > 1 && !train->parsed()) {
            return examples::CommandLineStop{
                1, fmt::format("{} runs in one process: only train runs under mpirun", sample->parsed() ? "sample" : eval->parsed() ? "eval" : "plot")};
        }
        if (!train->parsed()) return std::nullopt;
        for (const char* flag : {"cell", "hidden", "layers", "seq", "batch", "dropout", "lr", "clip", "optimizer", "seed"}) {
            if (train->count(std::string("--") + flag) > 0) t.explicit_flags.emplace_back(flag);
        }
        if (train->count("--val-fraction") > 0) t.explicit_flags.emplace_back("val_fraction");
        if (train->count("--zoneout") > 0) t.explicit_flags.emplace_back("zoneout");
        if (train->count("--variational-dropout") > 0) t.explicit_flags.emplace_back("variational_dropout");
        t.impl_given = train->count("--impl") > 0;
        try {
            t.config.validate("train");
        } catch (const std::exception& error) {
            return examples::CommandLineStop{1, error.what()};
        }
        return std::nullopt;
    }();
#ifdef XGRAD_CHARLM_MPI
    // No rank may leave before the others know: a rank that stopped alone would leave the rest
    // waiting in their first collective for ever.
    if (world) stop = agreed_stop(*world, stop);
#endif
    if (stop) {
        if (reporting) examples::print_stop(*stop, "xgrad-charlm");
        return stop->status;
    }
    // In one process (sample, eval, plot, or train without mpirun) any error is one line, std::bad_alloc
    // included; under mpirun, train's errors are handled by run_or_abort, inside.
    return examples::run_guarded("xgrad-charlm", "--hidden, --layers, --seq or --batch", [&] {
        if (train->parsed()) {
#ifdef XGRAD_CHARLM_MPI
            if (world) {
                // The host's cores shared between its ranks unless asked: spin-waiting OpenMP threads
                // of several processes on the same cores slow each other down.
                if (t.threads == 0) {
                    t.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ranks_on_this_host());
                }
                // An error every rank raised together is printed once and all exit 1; an error on one
                // rank alone is printed by it, and it ends the job (MPI_Abort) so no rank waits forever.
                return world->run_or_abort("xgrad-charlm", [&] {
                    world->set_timeout(t.collective_timeout, "xgrad-charlm");
                    charlm::MpiRanks mpi_ranks(*world);
                    try {
                        return charlm::train(t, mpi_ranks);
                    } catch (const charlm::SameOnEveryRank& e) {
                        if (reporting) fmt::print(stderr, "xgrad-charlm: {}\n", e.what());
                        return 1;
                    }
                });
            }
#endif
            return charlm::train(t);
        }
        if (sample->parsed()) return charlm::sample(s);
        if (plot->parsed()) return charlm::plot(p);
        return charlm::evaluate(e);
    });
}
