#!/usr/bin/env bash
# Data-parallel training on one machine: xgrad-charlm train on the quality configuration (--hidden
# 256 --seq 64 --batch 32), one process with 2 BLAS threads against 2 MPI ranks with 1 thread each,
# the runs interleaved, `runs` of each. Prints the training rate (the last progress line's chars/s:
# training time only) and rank 0's allreduce time per step, then their medians.
#   bash bench/mpi_scaling.sh [runs=5] [steps=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
steps=${2:-1000}
charlm=build/examples/xgrad-charlm
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
args=(train --hidden 256 --seq 64 --batch 32 --steps "$steps" --eval-every 0 --val-fraction 0.01)
rate() { grep -o '[0-9]* chars/s' | tail -1 | cut -d' ' -f1; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
: > "$out/one"; : > "$out/two"; : > "$out/allreduce"; : > "$out/share"
for ((i = 1; i <= runs; i++)); do
  one=$("$charlm" "${args[@]}" --threads 2 --out "$out/one.safetensors" 2>&1)
  two=$(mpirun -np 2 --oversubscribe "$charlm" "${args[@]}" --threads 1 --out "$out/two.safetensors" 2>&1)
  echo "$one" | rate >> "$out/one"
  echo "$two" | rate >> "$out/two"
  echo "$two" | sed -n 's/.*allreduce (rank 0): \([0-9.]*\) ms per step, \([0-9.]*\)% .*/\1/p' >> "$out/allreduce"
  echo "$two" | sed -n 's/.*allreduce (rank 0): \([0-9.]*\) ms per step, \([0-9.]*\)% .*/\2/p' >> "$out/share"
  echo "run $i: 1 process x 2 threads $(tail -1 "$out/one") chars/s; 2 ranks x 1 thread $(tail -1 "$out/two") chars/s," \
       "allreduce $(tail -1 "$out/allreduce") ms per step ($(tail -1 "$out/share")% of the step)"
done
m1=$(median < "$out/one"); m2=$(median < "$out/two")
echo "medians of $runs runs of $steps steps: 1 process x 2 threads $m1 chars/s; 2 ranks x 1 thread $m2 chars/s" \
     "(ratio $(awk -v a="$m2" -v b="$m1" 'BEGIN {printf "%.2f", a / b}')); allreduce $(median < "$out/allreduce") ms per step," \
     "$(median < "$out/share")% of the step"
