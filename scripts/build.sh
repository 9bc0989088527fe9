#!/usr/bin/env bash
# Configures and builds xgrad in ./build (Release, warnings as errors), after set-up.
# Arguments name the targets to build (default: everything). The compiler's output goes to
# build/build.log and is shown only if the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
targets=()
for t in "$@"; do targets+=(--target "$t"); done
mkdir -p build
echo "building${*:+ $*} in ./build (log: build/build.log) ..."
if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXGRAD_WERROR=ON &&
       cmake --build build -j "$jobs" "${targets[@]}"; } > build/build.log 2>&1; then
  tail -n 60 build/build.log
  echo "build failed: see build/build.log" >&2
  exit 1
fi
