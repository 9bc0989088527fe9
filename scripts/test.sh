#!/usr/bin/env bash
# The whole test suite: set-up, build, then every test through CTest.
#   bash scripts/test.sh              # Release build in ./build
#   bash scripts/test.sh --sanitize   # the same under AddressSanitizer + UBSan, in ./build-sanitize, with
#                                     # OpenBLAS for the fp32 GEMMs (oneDNN's JIT code is not instrumented), so
#                                     # the two runs together test both GEMM providers; and without
#                                     # MPI (XGRAD_MPI=OFF), so they test the build with and without xgrad::dist
#   bash scripts/test.sh --avx2       # the Release suite again with AVX-512 out of reach (our kernels capped at
#                                     # AVX2, ONEDNN_MAX_CPU_ISA=AVX2): on an AVX-512 machine, the code an AVX2
#                                     # machine runs
#   bash scripts/test.sh --quick      # the edit-compile-test loop: the build, then only the tests labelled
#                                     # quick (about 25 s on 2 cores), leaving out those labelled slow, mpi,
#                                     # examples and install (tests/CMakeLists.txt says which is which)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 1 ]; then
  echo "scripts/test.sh: one option at most (--quick, --sanitize or --avx2), got: $*" >&2
  exit 2
fi
case "${1:-}" in
  ""|--sanitize|--avx2|--quick) ;;
  *) echo "scripts/test.sh: unknown option '$1' (use --quick, --sanitize or --avx2, or nothing for the whole suite)" >&2; exit 2 ;;
esac
jobs=$(nproc 2>/dev/null || echo 2)
if [ "${1:-}" = "--sanitize" ]; then
  bash scripts/setup.sh
  echo "building with AddressSanitizer and UndefinedBehaviorSanitizer in ./build-sanitize (log: build-sanitize/build.log) ..."
  mkdir -p build-sanitize
  if ! { cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DXGRAD_WERROR=ON -DXGRAD_SANITIZE=ON -DXGRAD_GEMM=openblas -DXGRAD_MPI=OFF &&
         cmake --build build-sanitize -j "$jobs"; } > build-sanitize/build.log 2>&1; then
    tail -n 60 build-sanitize/build.log
    echo "sanitizer build failed: see build-sanitize/build.log" >&2
    exit 1
  fi
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --test-dir build-sanitize --output-on-failure -j "$jobs"
  exit 0
fi
if [ "${1:-}" = "--avx2" ]; then
  export XGRAD_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2
  echo "the suite with XGRAD_ISA=$XGRAD_ISA ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA"
fi
bash scripts/build.sh
if [ "${1:-}" = "--quick" ]; then
  ctest --test-dir build --output-on-failure -j "$jobs" -L '^quick$'
  exit 0
fi
ctest --test-dir build --output-on-failure -j "$jobs"
