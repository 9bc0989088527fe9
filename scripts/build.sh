#!/usr/bin/env bash
# Configures and builds xgrad in ./build (Release, warnings as errors), after setup.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXGRAD_WERROR=ON "$@" >/dev/null
cmake --build build -j "$jobs"
