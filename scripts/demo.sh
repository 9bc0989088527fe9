#!/usr/bin/env bash
# The main job: set-up, build, then train a small model and print its loss falling.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/examples/train_spiral "$@"
