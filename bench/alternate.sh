#!/usr/bin/env bash
# Times each implementation in its own process, alternated, and reports the best and the median of
# the runs' medians: in one process the order of implementations biased a comparison by 25%, and
# processes land in fast and slow groups. Every other argument goes to bench_rnn (configs, cells,
# threads, --layer).
#
#   bash bench/alternate.sh --rounds 3 --implementations torch,fused -- --configs M --cells lstm --threads 1
#   bash bench/alternate.sh --rounds 3 --implementations onednn,fused -- --layer --configs M,L
#
# Output: one markdown row per configuration, cell, thread count and implementation: best and median
# ms/step over the rounds, the share of the FMA peak (from the best run's own peak measurement), and
# the best time against the first implementation named (the anchor).
set -euo pipefail
bench="$(dirname "$0")/../build/bench/bench_rnn"
rounds=3
implementations=torch,fused
while [ "$#" -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --implementations) implementations="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "alternate.sh: unknown option $1 (--rounds, --implementations, --bench, then -- and bench_rnn's)" >&2; exit 2 ;;
  esac
done
[ -x "$bench" ] || { echo "alternate.sh: no $bench (bash scripts/build.sh bench_rnn)" >&2; exit 2; }
IFS=, read -r -a impls <<< "$implementations"
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for ((round = 0; round < rounds; round++)); do
  for ((i = 0; i < ${#impls[@]}; i++)); do
    impl=${impls[$(((i + round) % ${#impls[@]}))]}  # each round starts one further along
    threads=""
    "$bench" "$@" --implementations "$impl" | while IFS= read -r line; do
      case "$line" in
        "## "*) threads=$(sed -E 's/^## ([0-9]+) BLAS.*/\1/; s/^## The layer step alone.*, ([0-9]+) threads?;.*/\1/' <<< "$line") ;;
        "| config"* | "|---"*) ;;
        "| "*) echo "$impl|$threads$line" ;;
      esac
    done >> "$rows"
  done
done
# impl|threads| config | cell | implementation | median ms | GFLOP/s | % of peak | ...
awk -F'|' -v anchor="${impls[0]}" '
  { key = $3 "|" $4 "|" $2; impl = $1; name[key, impl] = $5; ms = $6 + 0; pct = $8
    n[key, impl]++; t[key, impl, n[key, impl]] = ms
    if (!((key, impl) in best) || ms < best[key, impl]) { best[key, impl] = ms; share[key, impl] = pct }
    if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
    if (!(impl in seen_impl)) { seen_impl[impl] = 1; order[++ni] = impl } }
  END {
    print "| config | cell | threads | implementation | best ms | median ms | runs | % of peak (best) | best vs " anchor " |"
    print "|---|---|---:|---|---:|---:|---:|---:|---:|"
    for (k = 1; k <= nk; k++) for (j = 1; j <= ni; j++) {
      key = keys[k]; impl = order[j]; if (!((key, impl) in best)) continue
      m = n[key, impl]; for (a = 1; a <= m; a++) v[a] = t[key, impl, a]
      for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (v[b] < v[a]) { x = v[a]; v[a] = v[b]; v[b] = x }
      median = m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
      split(key, part, "|")
      ratio = ((key, anchor) in best) ? sprintf("%.2fx", best[key, impl] / best[key, anchor]) : "-"
      printf "|%s|%s| %s |%s| %.3f | %.3f | %d |%s| %s |\n", part[1], part[2], part[3], name[key, impl], best[key, impl], median, m, share[key, impl], ratio
    } }' "$rows"
