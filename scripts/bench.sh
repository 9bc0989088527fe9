#!/usr/bin/env bash
# The benchmark: set-up (plus libtorch-dev, the benchmark's optional comparison), build, then the
# side-by-side table at 1 and 2 BLAS threads and the scaling tables. Arguments go to bench_rnn.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! dpkg-query -W -f='${Status}' libtorch-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "bench: installing libtorch-dev to compare against (optional; the library never uses it)"
  sudo=(); [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends libtorch-dev || echo "bench: no libtorch; timing xgrad alone"
fi
bash scripts/build.sh bench_rnn
if [ "$#" -gt 0 ]; then
  ./build/bench/bench_rnn "$@"
else
  ./build/bench/bench_rnn
  ./build/bench/bench_rnn --scaling --threads 1
fi
