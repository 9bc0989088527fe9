#!/usr/bin/env bash
# Kill test: trains with a checkpoint after every step, kills the trainer with SIGKILL at a random
# moment (N times, default 50; many land inside a save), and after each kill checks that the
# checkpoint loads and that training resumes from it. Exits 1 on any lost or corrupt checkpoint.
#   bash scripts/kill_test.sh [kills]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-50}
bash scripts/build.sh xgrad-charlm
charlm=./build/examples/xgrad-charlm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat /usr/share/games/fortunes/{computers,linux,science} > "$work/corpus.txt"
ckpt=$work/run.safetensors
"$charlm" train --corpus "$work/corpus.txt" --hidden 48 --seq 16 --batch 8 --steps 2 --eval-every 0 \
  --out "$ckpt" > /dev/null 2>&1
failures=0 last_step=0 resumed_ok=0
for i in $(seq 1 "$kills"); do
  "$charlm" train --corpus "$work/corpus.txt" --resume "$ckpt" --steps 1000000000 --save-every 1 --eval-every 0 \
    --out "$ckpt" > "$work/train.log" 2>&1 &
  pid=$!
  sleep "0.$(printf '%03d' $((RANDOM % 900 + 100)))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The checkpoint must load (eval reads and restores it) and hold a step at least as far as before.
  if ! "$charlm" eval --checkpoint "$ckpt" --corpus "$work/corpus.txt" > "$work/eval.log" 2>&1; then
    failures=$((failures + 1))
    echo "kill $i: checkpoint does not load: $(tail -n 1 "$work/eval.log")"
    continue
  fi
  # The step, from the checkpoint's JSON header (its metadata holds "step":"N").
  step=$(head -c 65536 "$ckpt" | grep -ao '"step":"[0-9]*"' | head -n 1 | tr -dc '0-9')
  if [ "$step" -lt "$last_step" ]; then
    failures=$((failures + 1))
    echo "kill $i: the checkpoint went back from step $last_step to $step"
  fi
  [ "$step" -gt "$last_step" ] && resumed_ok=$((resumed_ok + 1))
  last_step=$step
done
leftovers=$(ls "$work" | grep -c '\.tmp\.' || true)
echo "kill test: $kills kills, $failures lost or corrupt checkpoints, training advanced after $resumed_ok of them" \
     "(last checkpoint at step $last_step), $leftovers temporary files left"
[ "$failures" -eq 0 ]
