#!/usr/bin/env bash
# Installs what xgrad needs to build and test, from Debian's packages, if anything is missing.
# Safe to run again: it does nothing when everything is there.
set -euo pipefail

packages=(
  g++ cmake make
  libxtensor-dev xtl-dev libxsimd-dev libxtensor-blas-dev libopenblas-dev libdnnl-dev ocl-icd-libopencl1
  pkgconf                     # the install test builds a program from xgrad.pc
  libfmt-dev doctest-dev nlohmann-json3-dev libcli11-dev libxxhash-dev python3
  python3-xxhash              # examples/charlm/torch_interop.py checks checkpoints' content hashes
  fortunes clang libclang-rt-14-dev
  gnuplot-nox                 # xgrad-charlm plot
  doxygen                     # the API reference (the `docs` target, built by the tests)
  libopenmpi-dev openmpi-bin  # xgrad::dist and `mpirun -np N xgrad-charlm train` (optional: the build skips them without MPI)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
((${#missing[@]} == 0)) && exit 0

echo "setup: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
