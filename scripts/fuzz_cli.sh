#!/usr/bin/env bash
# Fuzzes xgrad-charlm's command line (tests/fuzz/cli_fuzz.py) for the given number of seconds
# (default 60), on the AddressSanitizer + UBSan build in ./build-sanitize, which it builds first if
# needed. Exits non-zero on any run that crashed, hung, printed a sanitizer report, refused without
# exactly one error line, or changed one of its input files.
#   bash scripts/fuzz_cli.sh [seconds] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
if [ ! -x build-sanitize/examples/xgrad-charlm ]; then
  bash scripts/setup.sh
  mkdir -p build-sanitize
  echo "building xgrad-charlm with the sanitizers in ./build-sanitize (log: build-sanitize/build.log) ..."
  { cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DXGRAD_WERROR=ON -DXGRAD_SANITIZE=ON &&
    cmake --build build-sanitize -j "$(nproc 2>/dev/null || echo 2)" --target xgrad-charlm; } > build-sanitize/build.log 2>&1 ||
    { tail -n 40 build-sanitize/build.log; exit 1; }
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
python3 tests/fuzz/cli_fuzz.py build-sanitize/examples/xgrad-charlm --seconds "$seconds" "$@"
