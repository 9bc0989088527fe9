#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (plus ASan and UBSan) in ./build-fuzz and runs each for
# the given number of seconds (default 30) from its seed corpus in tests/fuzz/corpus. Prints each
# target's executions and coverage; exits non-zero if any input crashed (the input is kept in
# build-fuzz/crashes/, to become a regression test).
#   bash scripts/fuzz.sh [seconds] [target ...]     targets: safetensors checkpoint utf8
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors checkpoint utf8)
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p build-fuzz/crashes
echo "building the fuzz targets with clang in ./build-fuzz (log: build-fuzz/build.log) ..."
names=()
for t in "${targets[@]}"; do names+=("fuzz_$t"); done
if ! { CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DXGRAD_FUZZ=ON -DXGRAD_GEMM=openblas \
         -DXGRAD_BUILD_TESTS=OFF -DXGRAD_BUILD_BENCH=OFF &&
       for n in "${names[@]}"; do cmake --build build-fuzz -j "$jobs" --target "$n" || exit 1; done; } > build-fuzz/build.log 2>&1; then
  tail -n 40 build-fuzz/build.log
  echo "fuzz build failed: see build-fuzz/build.log" >&2
  exit 1
fi
status=0
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t
  mkdir -p "$work"
  cp -n tests/fuzz/corpus/$t/* "$work"/ 2>/dev/null || true
  log=build-fuzz/fuzz_$t.log
  if ! ./build-fuzz/tests/fuzz/fuzz_$t "$work" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/$t- > "$log" 2>&1; then
    status=1
    echo "fuzz_$t: CRASH (see $log and build-fuzz/crashes/)"
  fi
  execs=$(grep -m1 "stat::number_of_executed_units" "$log" | awk '{print $2}' || true)
  cov=$(grep -E "cov: [0-9]+" "$log" | tail -1 | sed -E 's/.*cov: ([0-9]+).*ft: ([0-9]+).*/cov \1, ft \2/' || true)
  echo "fuzz_$t: ${seconds}s, ${execs:-?} executions, ${cov:-no coverage line}, corpus $(ls "$work" | wc -l) inputs"
done
exit $status
