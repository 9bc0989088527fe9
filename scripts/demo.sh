#!/usr/bin/env bash
# The main job: set-up, build, train a character-level language model on the fortunes corpus for
# about two minutes, then sample it. Extra arguments go to `xgrad-charlm train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh xgrad-charlm
charlm=./build/examples/xgrad-charlm
checkpoint=build/charlm-demo.safetensors
"$charlm" train --time-limit 120 --eval-every 500 --out "$checkpoint" "$@"
echo
echo "--- a sample (temperature 0.8) ---"
"$charlm" sample --checkpoint "$checkpoint" --prime "The " --length 400 --temperature 0.8 --seed 1
