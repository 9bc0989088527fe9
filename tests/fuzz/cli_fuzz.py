#!/usr/bin/env python3
"""Fuzzes xgrad-charlm's command line: every subcommand with random combinations of flags drawn from
valid, boundary and invalid values (0, -1, NaN, Inf, huge, empty, folders, inputs named as outputs).
Every run must
  - exit with status 0 or 1, never by a signal (a sanitizer abort counts as one) or a timeout;
  - with status 1, end stderr with its only "xgrad-charlm: ..." line (progress lines may come before it);
  - print no sanitizer report;
  - leave every input file (corpus files, checkpoints) byte for byte as it was, and add nothing to a
    corpus folder.

  python3 tests/fuzz/cli_fuzz.py build-sanitize/examples/xgrad-charlm --seconds 120 [--seed N]

Prints one line per failure (with the command, to reproduce it) and a summary; exits 1 on any failure.
"""
import argparse
import hashlib
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def words(n, seed):
    rng = random.Random(seed)
    vocab = ["the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "dog ", "ran ", "café ", "naïve ", "\n"]
    out = []
    size = 0
    while size < n:
        w = rng.choice(vocab)
        out.append(w)
        size += len(w)
    return "".join(out)


class Workspace:
    """The files the runs read, and the paths they may write."""

    def __init__(self, root, binary):
        self.root = root
        self.corpus = os.path.join(root, "corpus.txt")
        with open(self.corpus, "w", encoding="utf-8") as f:
            f.write(words(8000, 1))
        self.folder = os.path.join(root, "folder")
        os.makedirs(self.folder)
        with open(os.path.join(self.folder, "a.txt"), "w", encoding="utf-8") as f:
            f.write(words(6000, 2))
        with open(os.path.join(self.folder, "b.bin"), "wb") as f:
            f.write(b"\x00\xff\x00")
        self.binary = os.path.join(root, "binary.dat")
        with open(self.binary, "wb") as f:
            f.write(bytes(range(256)) * 8)
        self.empty = os.path.join(root, "empty.txt")
        open(self.empty, "w").close()
        self.checkpoint = os.path.join(root, "good.safetensors")
        made = subprocess.run([binary, "train", "--corpus", self.corpus, "--hidden", "8", "--seq", "8", "--batch", "4",
                               "--steps", "3", "--out", self.checkpoint], capture_output=True, text=True)
        if made.returncode != 0:
            sys.exit(f"cli_fuzz: could not make the seed checkpoint: {made.stderr.strip()}")
        self.damaged = os.path.join(root, "damaged.safetensors")
        data = bytearray(open(self.checkpoint, "rb").read())
        data[len(data) - 5] ^= 0x20
        open(self.damaged, "wb").write(bytes(data))
        self.inputs = [self.corpus, os.path.join(self.folder, "a.txt"), os.path.join(self.folder, "b.bin"), self.binary,
                       self.empty, self.checkpoint, self.damaged]
        self.pristine = {p: open(p, "rb").read() for p in self.inputs}
        self.out = os.path.join(root, "out.safetensors")

    def digests(self):
        """A digest per input file, and the corpus folder's listing (nothing may be added to it)."""
        d = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.exists(p) else None for p in self.inputs}
        d[self.folder] = " ".join(sorted(os.listdir(self.folder)))
        return d

    def inputs_of(self, args):
        """The workspace files a run reads: its corpus (a folder's files), checkpoint and resumed checkpoint."""
        named = {os.path.abspath(args[i + 1]) for i in range(len(args) - 1)
                 if args[i] in ("--corpus", "--resume", "--checkpoint") and args[i + 1]}
        return {p for p in self.inputs + [self.folder] if p in named or os.path.dirname(p) in named}

    def restore(self, path):
        with open(path, "wb") as f:
            f.write(self.pristine[path])


def pools(w):
    """Values per flag: valid first, then boundary and invalid ones. Expensive flags get only small
    valid values (or huge ones the memory guard refuses), so that every run ends within its time limit."""
    floats_01 = ["0", "0.5", "0.999999", "1", "-0.1", "nan", "NaN", "inf", "-inf", "1e999", "", "abc"]
    positive = ["1e-3", "0.5", "2", "0", "-1", "nan", "inf", "-inf", "1e999", "1e300", "", "x"]
    sizes = ["1", "2", "8", "16", "0", "-1", "1000000", "1073741824", "1073741825", "18446744073709551616", "", "1.5", "nan"]
    long_name = os.path.join(w.root, "n" * 250)
    paths_in = [w.corpus, w.folder, w.binary, w.empty, w.checkpoint, "", os.path.join(w.root, "missing.txt"), w.root + "/"]
    paths_out = [w.out, w.out, "", w.folder, w.corpus, os.path.join(w.folder, "a.txt"), os.path.join(w.folder, "new.st"),
                 "/proc/x.safetensors",
                 os.path.join(w.root, "no", "such", "dir.safetensors"), long_name, w.checkpoint, "./" + os.path.relpath(w.corpus)]
    checkpoints = [w.checkpoint, w.checkpoint, w.damaged, w.corpus, w.folder, w.binary, "", os.path.join(w.root, "absent")]
    return {
        "train": {
            "--corpus": paths_in[:1] * 4 + paths_in,
            "--cell": ["rnn", "lstm", "gru", "", "lstmx", "RNN"],
            "--hidden": ["4", "8", "16", "0", "-1", "1000000", "1073741824", "1073741825", "", "nan"],
            "--layers": ["1", "2", "0", "-1", "8", "1073741825", ""],
            "--seq": sizes,
            "--batch": sizes,
            "--steps": ["1", "5", "0", "-1", "1073741824", "1073741825", "nan", "", "9223372036854775808"],
            "--time-limit": ["0.5", "1", "0", "-1", "nan", "inf", "-inf", "1e999", "", "abc"],
            "--lr": positive,
            "--optimizer": ["sgd", "momentum", "adam", "adamw", "adagrad", "rmsprop", "nadam", ""],
            "--clip": positive,
            "--dropout": floats_01,
            "--zoneout": floats_01,
            "--variational-dropout": floats_01,
            "--seed": ["0", "1", "18446744073709551615", "-1", "18446744073709551616", "nan", ""],
            "--impl": ["graph", "fused", "cuda", ""],
            "--val-fraction": ["0", "0.1", "0.5", "0.9", "0.95", "1", "-0.1", "nan", "inf", ""],
            "--eval-every": ["0", "1", "3", "-1", "9223372036854775807", "nan", ""],
            "--save-every": ["0", "1", "2", "-1", "9223372036854775807", ""],
            "--out": paths_out,
            "--resume": checkpoints,
            "--threads": ["1", "2", "0", "-1", "257", "nan", ""],
            "--metrics": [os.path.join(w.root, "metrics.csv"), w.corpus, w.out, w.out + ".lock", w.folder,
                          os.path.join(w.folder, "m.csv"), "", "/proc/m.csv", w.checkpoint],
            "--detect-anomaly": None,
        },
        "sample": {
            "--checkpoint": checkpoints,
            "--prime": ["the ", "", "zebra", "\u00e9", "\U0001F600", "naïve cat"],
            "--length": ["1", "20", "0", "-1", "1073741825", "nan", ""],
            "--temperature": ["0.8", "1", "1e-30", "0", "-1", "nan", "inf", "-inf", "1e999", "1e300", ""],
            "--top-k": ["0", "1", "3", "1000", "-1", "18446744073709551616", ""],
            "--seed": ["0", "7", "-1", "nan", ""],
        },
        "eval": {
            "--checkpoint": checkpoints,
            "--corpus": paths_in,
        },
    }


def command(rng, w, table):
    sub = rng.choice(["train", "train", "train", "sample", "eval"])
    args = [sub]
    flags = table[sub]
    if sub == "train":
        # First, so that a flag drawn later overrides them: every run is bounded in steps and time.
        args += ["--steps", "20", "--time-limit", "2", "--hidden", "8", "--seq", "8", "--batch", "4", "--out", w.out]
    else:
        args += ["--checkpoint", w.checkpoint] + (["--corpus", w.corpus] if sub == "eval" else [])
    for flag in rng.sample(sorted(flags), rng.randint(0, min(6, len(flags)))):
        if flags[flag] is None:
            args.append(flag)
        else:
            args += [flag, rng.choice(flags[flag])]
    if rng.random() < 0.03:
        args.append(rng.choice(["--no-such-flag", "extra", "--help"]))
    if rng.random() < 0.02:
        args = [rng.choice(["frobnicate", "", "--help"])] + args[1:]
    return args


def check(result, before, after, timed_out):
    """What is wrong with one run, or None."""
    if timed_out:
        return "did not finish within its time limit"
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    if result.returncode not in (0, 1):
        return f"exit status {result.returncode}"
    for mark in SANITIZER_MARKS:
        if mark in result.stderr:
            return f"sanitizer report: {mark}"
    if result.returncode == 1:
        lines = [l for l in result.stderr.replace("\r", "\n").splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("xgrad-charlm: ")]
        if len(errors) != 1 or lines[-1] != errors[0]:
            return f"status 1 without exactly one error line: {result.stderr.strip()[:300]!r}"
    changed = [p for p in before if before[p] != after[p]]
    if changed:
        return f"changed input files: {', '.join(changed)}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=60, help="seconds one run may take")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    binary = os.path.abspath(options.binary)
    root = tempfile.mkdtemp(prefix="xgrad_cli_fuzz_")
    failures, runs, statuses, distinct = [], 0, {0: 0, 1: 0}, set()
    try:
        os.chdir(root)
        w = Workspace(root, binary)
        table = pools(w)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        start = time.monotonic()
        while time.monotonic() - start < options.seconds:
            args = command(rng, w, table)
            before = w.digests()
            timed_out = False
            try:
                result = subprocess.run([binary] + args, capture_output=True, text=True, errors="replace", env=env,
                                        timeout=options.timeout, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as e:
                timed_out = True
                result = subprocess.CompletedProcess(e.cmd, -9, "", "")
            after = w.digests()
            # Only this run's inputs must be untouched: a workspace file named as an output (and not read) may be
            # replaced, as the user asked, and so may the checkpoint being resumed (that is how training goes on).
            read = w.inputs_of(args) - ({args[i + 1] for i in range(len(args) - 1) if args[i] == "--out"} & {w.checkpoint})
            problem = check(result, {p: before[p] for p in read}, {p: after[p] for p in read}, timed_out)
            runs += 1
            distinct.add(tuple(a for a in args if a.startswith("--")))
            if result.returncode in statuses:
                statuses[result.returncode] += 1
            if problem:
                failures.append(problem)
                print(f"FAIL: {problem}\n  xgrad-charlm {shlex.join(args)}", flush=True)
            for p in w.inputs:  # the next run starts from the same files
                if after[p] != before[p]:
                    w.restore(p)
            for name in set(os.listdir(w.folder)) - {"a.txt", "b.bin"}:
                os.remove(os.path.join(w.folder, name))
            for path in (w.out, os.path.join(root, "metrics.csv")):
                if os.path.isfile(path):
                    os.remove(path)
        elapsed = time.monotonic() - start
    finally:
        os.chdir("/")
        shutil.rmtree(root, ignore_errors=True)
    print(f"cli fuzz: seed {seed}, {runs} runs in {elapsed:.0f} s ({len(distinct)} distinct flag sets; "
          f"{statuses[0]} exited 0, {statuses[1]} exited 1), {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
