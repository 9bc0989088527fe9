// xgrad-charlm: the UTF-8 decoder and corpus reader, checkpoints (exact resume, a writer killed
// mid-save), and the program itself through real runs, including every bad input it must refuse.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "charlm_run.hpp"
#include "checkpoint.hpp"
#include "corpus.hpp"
#include "training.hpp"

using charlm::decode_utf8;
using charlm::Utf8Error;


TEST_CASE("UTF-8: strict decoding with the byte offset of the first error") {
    Utf8Error e;
    CHECK(decode_utf8("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", e) == std::u32string{U'a', 0xE9, 0x20AC, 0x1F600});
    struct Bad {
        std::string bytes;
        std::size_t offset;
        std::string reason;
    };
    for (const Bad& bad : {Bad{"ab\x80", 2, "invalid byte 0x80"}, Bad{"a\xc0\xaf", 1, "overlong"},
                           Bad{"\xed\xa0\x80", 0, "U+D800"}, Bad{"xy\xe2\x82", 2, "truncated"},
                           Bad{"\xf4\x90\x80\x80", 0, "U+110000"}, Bad{"\xc3(", 0, "does not continue"},
                           Bad{std::string("ok\0", 3), 2, "NUL"}}) {
        CAPTURE(bad.reason);
        CHECK_FALSE(decode_utf8(bad.bytes, e));
        CHECK(e.offset == bad.offset);
        CHECK(e.reason.find(bad.reason) != std::string::npos);
    }
    CHECK(decode_utf8(std::string("a\0b", 3), e, false) == std::u32string{U'a', 0, U'b'});
    const std::u32string all = {U'x', 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF};
    CHECK(decode_utf8(charlm::encode_utf8(all), e) == all);
}

TEST_CASE("corpus: files, folders in name order, and every refusal") {
    const fs::path dir = scratch() / "folder";
    fs::create_directories(dir);
    write(dir / "b.txt", "second");
    write(dir / "a.txt", "first ");
    write(dir / "c.dat", std::string("\x00\x01\x02", 3));
    fs::create_symlink(dir / "a.txt", dir / "d.link");
    charlm::Corpus c = charlm::load_corpus(dir.string());
    CHECK(c.text == U"first second");
    CHECK(c.skipped == std::vector<charlm::SkippedFile>{{"c.dat", charlm::not_utf8_text}});
    CHECK(c.files.size() == 2);

    using charlm::InputError;
    CHECK_THROWS_WITH_AS(charlm::load_corpus((scratch() / "missing.txt").string()), doctest::Contains("no such file or folder"),
                         InputError);
    write(scratch() / "empty.txt", "");
    CHECK_THROWS_WITH_AS(charlm::load_corpus((scratch() / "empty.txt").string()), doctest::Contains("the file is empty"), InputError);
    write(scratch() / "latin1.txt", "caf\xe9 au lait");
    CHECK_THROWS_WITH_AS(charlm::load_corpus((scratch() / "latin1.txt").string()),
                         doctest::Contains("latin1.txt: not UTF-8 text: byte 0x20 does not continue the sequence at byte offset 3"), InputError);
    const fs::path binary = scratch() / "binary";
    fs::create_directories(binary);
    write(binary / "x.dat", std::string("\xff\xfe", 2));
    CHECK_THROWS_WITH_AS(charlm::load_corpus(binary.string()), doctest::Contains("no readable, non-empty UTF-8 text files"),
                         InputError);
}

TEST_CASE("vocabulary: sorted code points, lookups, descriptions") {
    auto v = charlm::Vocabulary::of(U"banana\x7");
    CHECK(v.symbols() == std::u32string{7, U'a', U'b', U'n'});
    CHECK(*v.index(U'n') == 3);
    CHECK_FALSE(v.index(U'z'));
    CHECK(charlm::describe(U'é') == "'é'");
    CHECK(charlm::describe(7) == "U+0007");
}

TEST_CASE("train, sample and eval run end to end, and the metrics file has the documented columns") {
    const fs::path out = scratch() / "e2e.safetensors", metrics = scratch() / "e2e.csv";
    Run r = run(fmt::format("train --corpus {} {} --steps 10 --out {} --metrics {}", small_corpus().string(), tiny,
                            out.string(), metrics.string()));
    CAPTURE(r.output);
    REQUIRE(r.code == 0);
    CHECK(r.output.find("final validation:") != std::string::npos);
    CHECK(r.output.find("checkpoint: " + out.string()) != std::string::npos);
    const std::string csv = read(metrics);
    CHECK(csv.starts_with("step,train_loss,train_bpc,val_bpc,chars_per_s,elapsed_s\n5,"));
    CHECK(csv.find("\n10,") != std::string::npos);

    Run s = run(fmt::format("sample --checkpoint {} --prime \"the \" --length 50 --seed 3", out.string()));
    CAPTURE(s.output);
    CHECK(s.code == 0);
    CHECK(s.output.starts_with("the "));
    Utf8Error e;
    CHECK(decode_utf8(s.output, e)->size() == 4 + 50 + 1);
    CHECK(run(fmt::format("sample --checkpoint {} --prime \"the \" --length 50 --seed 3", out.string())).output == s.output);

    write(scratch() / "other.txt", "the cat sat on the mat with a zebra");  // 'z', 'w', 'h', 'b' are new
    Run ev = run(fmt::format("eval --checkpoint {} --corpus {}", out.string(), (scratch() / "other.txt").string()));
    CAPTURE(ev.output);
    CHECK(ev.code == 0);
    CHECK(ev.output.find("bits per character over") != std::string::npos);
    CHECK(ev.output.find("characters outside the model's vocabulary were left out") != std::string::npos);
}

TEST_CASE("progress: one line rewritten in place on a terminal, plain lines on a pipe") {
    const fs::path out = scratch() / "progress.safetensors";
    const std::string args = fmt::format("train --corpus {} {} --steps 10 --out {}", small_corpus().string(), tiny, out.string());
    const Run piped = run(args);
    CAPTURE(piped.output);
    REQUIRE(piped.code == 0);
    CHECK(piped.output.find('\r') == std::string::npos);
    CHECK(piped.output.find("\nstep 5 loss") != std::string::npos);
    CHECK(piped.output.find("\nstep 10 loss") != std::string::npos);

    if (run_command("script --version | grep -q util-linux").code != 0) {
        MESSAGE("the terminal half is skipped: no util-linux `script` to run the program on a pseudo-terminal");
        return;
    }
    const Run tty = run_command(fmt::format("TERM=xterm script -qec '{} {}' /dev/null", XGRAD_CHARLM, args));
    CAPTURE(tty.output);
    REQUIRE(tty.code == 0);
    CHECK(tty.output.find("\rstep 5 loss") != std::string::npos);
    CHECK(tty.output.find("\rstep 10 loss") != std::string::npos);
    CHECK(tty.output.find("\x1b[K") != std::string::npos);      // the rest of the old line cleared
    CHECK(tty.output.find("\nstep ") == std::string::npos);     // no update starts a line of its own
    const std::size_t summary = tty.output.find("final validation");
    REQUIRE(summary != std::string::npos);
    CHECK(tty.output[summary - 1] == '\n');                    // the summary after the live line, not on it

    const Run dumb = run_command(fmt::format("TERM=dumb script -qec '{} {}' /dev/null", XGRAD_CHARLM, args));
    CAPTURE(dumb.output);
    REQUIRE(dumb.code == 0);
    CHECK(dumb.output.find("\rstep 10 loss") != std::string::npos);
    CHECK(dumb.output.find("\x1b[") == std::string::npos);     // a terminal without escape sequences gets none
}

TEST_CASE("plot draws the metrics against steps and wall time as SVG or PNG, and refuses what it cannot draw") {
    if (gnuplot_missing()) return;
    const fs::path out = scratch() / "plot.safetensors", metrics = scratch() / "plot.csv";
    REQUIRE(run(fmt::format("train --corpus {} {} --steps 15 --out {} --metrics {}", small_corpus().string(), tiny, out.string(),
                            metrics.string())).code == 0);
    const fs::path svg = scratch() / "curve.svg", png = scratch() / "curve.png";
    Run r = run(fmt::format("plot --metrics {} --out {}", metrics.string(), svg.string()));
    CAPTURE(r.output);
    REQUIRE(r.code == 0);
    CHECK(r.output.find("plot: 3 rows from") != std::string::npos);
    const std::string picture = read(svg);
    CHECK(picture.find("<svg") != std::string::npos);
    CHECK(picture.find("validation") != std::string::npos);
    CHECK(picture.find("wall time (s)") != std::string::npos);
    REQUIRE(run(fmt::format("plot --metrics {} --out {}", metrics.string(), png.string())).code == 0);
    CHECK(read(png).starts_with("\x89PNG"));
    // A file name with a quote and underscores: quoted for the shell and gnuplot alike, drawn as is.
    const fs::path odd = scratch() / "it's_a_curve.svg";
    REQUIRE(run(fmt::format("plot --metrics {} --out \"{}\"", metrics.string(), odd.string())).code == 0);
    CHECK(read(odd).find("<svg") != std::string::npos);
    // Refusals: one line each, and nothing written.
    auto one_line_refusal = [](const Run& r, const std::string& needle) {
        expect_refusal(r, needle);
        CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
    };
    write(scratch() / "bad.csv", "step,train_loss,train_bpc,val_bpc,chars_per_s,elapsed_s\n5,1.0,1.4,1.5,100,0.1\n10,1.0,oops,1.5,100,0.2\n");
    one_line_refusal(run(fmt::format("plot --metrics {} --out {}", (scratch() / "bad.csv").string(), (scratch() / "bad.svg").string())),
                   "line 3: field 3 ('oops') is not a finite number");
    CHECK_FALSE(fs::exists(scratch() / "bad.svg"));
    write(scratch() / "other.csv", "a,b\n");
    one_line_refusal(run(fmt::format("plot --metrics {} --out {}", (scratch() / "other.csv").string(), svg.string())),
                   "line 1 is not the header train --metrics writes");
    one_line_refusal(run(fmt::format("plot --metrics {} --out {}", metrics.string(), (scratch() / "curve.pdf").string())),
                   "the picture is .svg or .png");
    const fs::path named_svg = scratch() / "metrics.svg";  // a metrics file whose name could be the picture's
    fs::copy_file(metrics, named_svg, fs::copy_options::overwrite_existing);
    one_line_refusal(run(fmt::format("plot --metrics {} --out {}", named_svg.string(), named_svg.string())), "it is the metrics file");
    CHECK(read(named_svg) == read(metrics));
    one_line_refusal(run(fmt::format("plot --metrics {} --out {}", metrics.string(), (scratch() / "no" / "such.svg").string())),
                   "does not exist or cannot be written");
    CHECK(read(svg) == picture);  // untouched by the refusals
    for (const auto& entry : fs::directory_iterator(scratch())) {  // no temporary or log left behind
        CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
    }
}

namespace {
// The number before " bits per character" in a run's output.
double bits_in(const std::string& output) {
    const std::size_t end = output.find(" bits per character");
    REQUIRE(end != std::string::npos);
    std::size_t start = end;
    while (start > 0 && (std::isdigit(static_cast<unsigned char>(output[start - 1])) || output[start - 1] == '.')) --start;
    return std::stod(output.substr(start, end - start));
}
}  // namespace

TEST_CASE("PyTorch reads xgrad-charlm checkpoints and gives the same bits per character, and writes ones xgrad-charlm reads" * doctest::test_suite("slow")) {
    const std::string python = "/usr/bin/python3";
    if (std::system((python + " -c 'import torch' > /dev/null 2>&1").c_str()) != 0) {
        MESSAGE("skipped: /usr/bin/python3 cannot import torch (Debian: apt-get install python3-torch)");
        return;
    }
    const std::string script = fmt::format("{} {}", python, XGRAD_INTEROP_SCRIPT);
    for (const char* cell : {"rnn", "lstm", "gru"}) {
        CAPTURE(cell);
        const fs::path out = scratch() / fmt::format("interop_{}.safetensors", cell);
        REQUIRE(run(fmt::format("train --corpus {} --cell {} --hidden 12 --layers 2 --seq 8 --batch 4 --steps 20 --out {}",
                                small_corpus().string(), cell, out.string())).code == 0);
        const Run xgrad_eval = run(fmt::format("eval --checkpoint {} --corpus {}", out.string(), small_corpus().string()));
        const Run torch_eval = run_command(fmt::format("{} eval --checkpoint {} --corpus {}", script, out.string(), small_corpus().string()));
        CAPTURE(xgrad_eval.output);
        CAPTURE(torch_eval.output);
        REQUIRE(torch_eval.code == 0);
        CHECK(std::abs(bits_in(xgrad_eval.output) - bits_in(torch_eval.output)) < 1e-4);  // xgrad prints 4 decimals
    }
    // The other way: trained in PyTorch, sampled and evaluated by xgrad-charlm.
    const fs::path exported = scratch() / "from_torch.safetensors";
    const Run made = run_command(fmt::format("{} export --corpus {} --out {} --cell lstm --steps 40", script, small_corpus().string(),
                                             exported.string()));
    CAPTURE(made.output);
    REQUIRE(made.code == 0);
    const Run evaluated = run(fmt::format("eval --checkpoint {} --corpus {}", exported.string(), small_corpus().string()));
    CHECK(std::abs(bits_in(evaluated.output) - bits_in(made.output)) < 1e-4);
    const Run sampled = run(fmt::format("sample --checkpoint {} --prime \"the \" --length 30", exported.string()));
    CHECK(sampled.code == 0);
    CHECK(sampled.output.starts_with("the "));
}

TEST_CASE("resume is exact: N steps, save, resume in a fresh process, N more equal 2N straight, bit for bit") {
    // The first runs are pinned to OpenBLAS so that they multiply alike; the resumed run is pinned to
    // another provider, which the GEMM choices kept in the checkpoint must overrule.
    const std::vector<std::string> providers = xgrad::gemm_providers();
    const bool with_onednn = std::find(providers.begin(), providers.end(), "onednn") != providers.end();
    const std::string first = "env XGRAD_GEMM_PROVIDER=openblas",
                      resuming = fmt::format("env XGRAD_GEMM_PROVIDER={}", with_onednn ? "onednn" : "small-rows");
    for (const char* variant : {"--impl fused", "--impl graph", "--cell lstm", "--cell gru",
                                "--cell lstm --zoneout 0.2 --variational-dropout 0.2"}) {
        CAPTURE(variant);
        const std::string common = fmt::format("train --corpus {} {} --dropout 0.3 --layers 2 {}",
                                               small_corpus().string(), tiny, variant);
        const fs::path straight = scratch() / "straight.safetensors", half = scratch() / "half.safetensors",
                       resumed = scratch() / "resumed.safetensors";
        REQUIRE(run_with(first, fmt::format("{} --steps 24 --out {}", common, straight.string())).code == 0);
        REQUIRE(run_with(first, fmt::format("{} --steps 12 --out {}", common, half.string())).code == 0);
        Run r = run_with(resuming, fmt::format("train --corpus {} --resume {} --steps 24 --out {}", small_corpus().string(),
                                               half.string(), resumed.string()));
        CAPTURE(r.output);
        REQUIRE(r.code == 0);
        auto a = xgrad::load_safetensors<float>(straight.string());
        auto b = xgrad::load_safetensors<float>(resumed.string());
        REQUIRE(a.tensors.size() == b.tensors.size());
        for (const auto& [name, value] : a.tensors) {
            CAPTURE(name);
            CHECK(b.tensors.at(name) == value);
        }
        CHECK(a.metadata.at("step") == "24");
        CHECK(b.metadata.at("step") == "24");
        CHECK(a.metadata.at("dropout_rng") == b.metadata.at("dropout_rng"));
    }
}

TEST_CASE("XGRAD_GEMM_PROVIDER naming no provider is refused in one line, naming the variable and the providers there are") {
    expect_refusal(run_with("env XGRAD_GEMM_PROVIDER=mkl", fmt::format("train --corpus {} {} --steps 2 --out {}", small_corpus().string(), tiny,
                                                                       (scratch() / "mkl.safetensors").string())),
                   "XGRAD_GEMM_PROVIDER: no GEMM provider 'mkl' in this build (auto, ");
    CHECK_FALSE(fs::exists(scratch() / "mkl.safetensors"));
}

TEST_CASE("--checkpoint-activations trains to the same parameters, both implementations, and refuses what it cannot do") {
    // Segments of ceil(sqrt(8)) = 3 steps (the last one shorter), or 2; two layers with dropout
    // between them. The loss is summed segment by segment, in another order than the whole
    // sequence's mean: equal to float rounding (1e-5 after 12 Adam steps of a small model).
    for (const char* variant : {"--impl fused", "--impl graph", "--impl fused --cell lstm", "--impl graph --cell gru"}) {
        CAPTURE(variant);
        const std::string common = fmt::format("train --corpus {} {} --dropout 0.3 --layers 2 --steps 12 {}",
                                               small_corpus().string(), tiny, variant);
        const fs::path whole = scratch() / "whole.safetensors";
        REQUIRE(run(fmt::format("{} --out {}", common, whole.string())).code == 0);
        const auto a = xgrad::load_safetensors<float>(whole.string());
        for (const char* segments : {"--checkpoint-activations", "--checkpoint-segment 2"}) {
            CAPTURE(segments);
            const fs::path segmented = scratch() / "segmented.safetensors";
            Run r = run(fmt::format("{} {} --out {}", common, segments, segmented.string()));
            CAPTURE(r.output);
            REQUIRE(r.code == 0);
            CHECK(r.output.find(fmt::format("activations checkpointed every {} steps",
                                            std::string(segments).ends_with("2") ? 2 : 3)) != std::string::npos);
            const auto b = xgrad::load_safetensors<float>(segmented.string());
            REQUIRE(a.tensors.size() == b.tensors.size());
            for (const auto& [name, value] : a.tensors) {
                CAPTURE(name);
                CHECK(xt::amax(xt::abs(b.tensors.at(name) - value))() < 1e-5f);
            }
        }
    }
    expect_refusal(run(fmt::format("train --corpus {} {} --steps 2 --zoneout 0.1 --checkpoint-activations --out {}",
                                   small_corpus().string(), tiny, (scratch() / "x.safetensors").string())),
                   "checkpointed activations do not combine with zoneout or variational dropout");
}

TEST_CASE("a checkpoint of a model that trains only in checkpointed segments loads") {
    // --seq 2^20 at batch 256: hundreds of GB with the whole sequence's activations, a few with
    // segments. Reading it must not refuse it for the memory of a run it would not make.
    const fs::path path = scratch() / "long.safetensors";
    xgrad::Generator gen(1);
    charlm::Config config;
    config.hidden = 64;
    config.seq = std::size_t{1} << 20;
    config.batch = 256;
    charlm::CharLM model(config, 40, gen);
    auto optimizer = charlm::make_optimizer("adam", model.parameters(), 1e-3);
    charlm::TrainingState state{config, charlm::Vocabulary::of(U"abcdefghijklmnopqrstuvwxyz0123456789 .,\n"), 0, 0, 1000,
                                model.zero_state(config.batch)};
    charlm::save_checkpoint(path.string(), state, model, *optimizer);
    CHECK(charlm::training_memory_bytes(config, 40, 0) > 1e11);
    const charlm::Checkpoint loaded = charlm::read_checkpoint(path.string());
    CHECK(loaded.state.config.seq == config.seq);
}

TEST_CASE("a checkpoint writer killed at random moments always leaves a loadable checkpoint") {
    const fs::path path = scratch() / "killed.safetensors";
    xgrad::Generator gen(1);
    charlm::Config config;
    config.hidden = 64;
    config.batch = 8;
    charlm::CharLM model(config, 40, gen);
    auto optimizer = charlm::make_optimizer("adam", model.parameters(), 1e-3);
    charlm::TrainingState state{config, charlm::Vocabulary::of(U"abcdefghijklmnopqrstuvwxyz0123456789 .,\n"), 0, 0, 1000,
                                model.zero_state(8)};
    charlm::save_checkpoint(path.string(), state, model, *optimizer);
    std::mt19937 rng(42);
    int checked = 0;
    for (int round = 0; round < 25; ++round) {
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {  // write checkpoints back to back until killed
            for (std::int64_t step = 1;; ++step) {
                state.step = step;
                charlm::save_checkpoint(path.string(), state, model, *optimizer);
            }
        }
        ::usleep(1000 + rng() % 20000);
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        charlm::Checkpoint c = charlm::read_checkpoint(path.string());  // throws if damaged
        charlm::restore(c, model, optimizer.get());
        ++checked;
    }
    CHECK(checked == 25);
    std::size_t leftovers = 0;
    for (const auto& entry : fs::directory_iterator(scratch())) leftovers += entry.path().string().find(".tmp.") != std::string::npos;
    CHECK(leftovers <= 1);  // at most the temporary file of the write that was killed
}

TEST_CASE("bad corpora, flags and checkpoints: one clear line, non-zero exit, nothing damaged") {
    const fs::path good = scratch() / "good.safetensors";
    REQUIRE(run(fmt::format("train --corpus {} {} --steps 5 --out {}", small_corpus().string(), tiny, good.string())).code == 0);
    const std::string good_bytes = read(good);
    const std::string train = fmt::format("train {} --steps 2 --out {}", tiny, (scratch() / "x.safetensors").string());

    expect_refusal(run(fmt::format("{} --corpus {}", train, (scratch() / "nope.txt").string())), "no such file or folder");
    write(scratch() / "empty2.txt", "");
    expect_refusal(run(fmt::format("{} --corpus {}", train, (scratch() / "empty2.txt").string())), "the file is empty");
    write(scratch() / "aaaa.txt", std::string(5000, 'a'));
    expect_refusal(run(fmt::format("{} --corpus {}", train, (scratch() / "aaaa.txt").string())), "single distinct character ('a')");
    write(scratch() / "short.txt", words(20));
    expect_refusal(run(fmt::format("{} --corpus {}", train, (scratch() / "short.txt").string())), "too few for one batch");
    write(scratch() / "tiny.txt", "ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab ba ab");
    expect_refusal(run(fmt::format("train --hidden 4 --seq 2 --batch 2 --steps 1 --val-fraction 0.01 --out {} --corpus {}",
                                   (scratch() / "x.safetensors").string(), (scratch() / "tiny.txt").string())),
                   "validation split");
    write(scratch() / "bad-utf8.txt", words(3000) + "\xff" + words(100));
    expect_refusal(run(fmt::format("{} --corpus {}", train, (scratch() / "bad-utf8.txt").string())), "at byte offset 3");
    const fs::path binary = scratch() / "binary-only";
    fs::create_directories(binary);
    write(binary / "blob", std::string("\x00\xff", 2));
    expect_refusal(run(fmt::format("{} --corpus {}", train, binary.string())), "no readable, non-empty UTF-8 text files");

    for (const char* flag : {"--hidden 0", "--steps 0", "--lr 0", "--lr -1", "--batch 0", "--seq 0", "--dropout 1",
                             "--optimizer nadam", "--cell lstmx", "--impl cuda", "--val-fraction 1.5"}) {
        CAPTURE(flag);
        const Run r = run(fmt::format("train --corpus {} {}", small_corpus().string(), flag));
        CHECK(r.code != 0);
        CHECK(r.output.find(std::string(flag).substr(0, std::string(flag).find(' '))) != std::string::npos);
    }
    expect_refusal(run(fmt::format("train --corpus {} --hidden 200000 --out {}", small_corpus().string(),
                                   (scratch() / "x.safetensors").string())), "would need up to");
    expect_refusal(run(fmt::format("sample --checkpoint {} --temperature 0", good.string())), "--temperature");
    expect_refusal(run(fmt::format("sample --checkpoint {} --prime \"zebra\"", good.string())),
                   "--prime: character 'z' at position 0 is not in the model's vocabulary");
    expect_refusal(run(fmt::format("train --corpus {} --out {}/no/such/dir/x.safetensors", small_corpus().string(),
                                   scratch().string())), "does not exist");
    // Nobody, root included, can create files in /proc.
    expect_refusal(run(fmt::format("train --corpus {} --out /proc/x.safetensors", small_corpus().string())),
                   "--out /proc/x.safetensors: cannot");

    // Damaged checkpoints, for sample, eval and --resume alike.
    const fs::path truncated = scratch() / "truncated.safetensors", corrupted = scratch() / "corrupted.safetensors",
                   foreign = scratch() / "foreign.safetensors", future = scratch() / "future.safetensors";
    write(truncated, good_bytes.substr(0, good_bytes.size() - 7));
    std::string flipped = good_bytes;
    flipped[12] = '#';  // inside the JSON header
    write(corrupted, flipped);
    xgrad::TensorFile<float> plain;
    plain.tensors["weight"] = xgrad::Tensor<float>{1.0f};
    xgrad::save_safetensors(foreign.string(), plain);
    auto newer = xgrad::load_safetensors<float>(good.string());
    newer.metadata["format_version"] = "99";
    xgrad::save_safetensors(future.string(), newer);
    const fs::path inflated = scratch() / "inflated.safetensors";  // a small file claiming a huge model
    auto claims = xgrad::load_safetensors<float>(good.string());
    auto config = nlohmann::json::parse(claims.metadata.at("config"));
    config["hidden"] = 100000;
    claims.metadata["config"] = config.dump();
    xgrad::save_safetensors(inflated.string(), claims);
    for (const auto& [file, needle] : std::vector<std::pair<fs::path, std::string>>{
             {truncated, "byte offset"}, {corrupted, "corrupted.safetensors"}, {foreign, "not an xgrad-charlm checkpoint"},
             {future, "format version 99 is newer than this program reads (1)"}, {scratch() / "absent.safetensors", "absent"},
             {inflated, "its model tensors hold"}}) {
        CAPTURE(file.string());
        expect_refusal(run(fmt::format("sample --checkpoint {}", file.string())), needle);
        expect_refusal(run(fmt::format("eval --checkpoint {} --corpus {}", file.string(), small_corpus().string())), needle);
        expect_refusal(run(fmt::format("train --corpus {} --resume {} --out {}", small_corpus().string(), file.string(),
                                       good.string())), needle);
    }
    // A resume that does not fit the corpus or the flags.
    write(scratch() / "different.txt", words(6000, 2) + "xyz");
    expect_refusal(run(fmt::format("train --corpus {} --resume {} --out {}", (scratch() / "different.txt").string(),
                                   good.string(), good.string())), "distinct characters");
    expect_refusal(run(fmt::format("train --corpus {} --resume {} --hidden 64 --out {}", small_corpus().string(), good.string(),
                                   good.string())), "the checkpoint has hidden 12, but --hidden 64 was given");
    CHECK(read(good) == good_bytes);  // every refusal left the checkpoint as it was
}
