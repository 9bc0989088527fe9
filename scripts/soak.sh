#!/usr/bin/env bash
# Soak: trains the small char-LM configuration for N steps (default 20000) while sampling the
# process's resident memory, then checks that after warm-up (the first 10% of samples) it stays
# within 5% of its level at the end of warm-up. Prints the figures; exits 1 if memory grew.
#   bash scripts/soak.sh [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20000}
bash scripts/build.sh xgrad-charlm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./build/examples/xgrad-charlm train --hidden 64 --seq 32 --batch 16 --steps "$steps" --eval-every 0 \
  --val-fraction 0.01 --out "$work/soak.safetensors" > "$work/train.log" 2>&1 &
pid=$!
: > "$work/rss"
start=$(date +%s%N)
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(( ($(date +%s%N) - start) / 1000000 ))e-3 $rss" >> "$work/rss"
  sleep 0.25
done
wait "$pid" || { cat "$work/train.log"; echo "soak: training failed" >&2; exit 1; }
tail -n 3 "$work/train.log"
awk '
  { t[NR] = $1; r[NR] = $2 }
  END {
    if (NR < 20) { print "soak: too few samples (" NR ")"; exit 1 }
    w = int(NR / 10); base = r[w]; hi = base; lo = base
    for (i = w; i <= NR; i++) { if (r[i] > hi) hi = r[i]; if (r[i] < lo) lo = r[i] }
    growth = 100 * (hi - base) / base
    printf "soak: %d RSS samples over %.0f s; after warm-up (%.0f s): start %.1f MB, min %.1f MB, max %.1f MB, end %.1f MB; max growth %.2f%%\n",
      NR, t[NR], t[w], base / 1024, lo / 1024, hi / 1024, r[NR] / 1024, growth
    exit growth > 5 ? 1 : 0
  }' "$work/rss"
