#!/usr/bin/env bash
# build.sh: configures and builds nupipe. Usage: scripts/build.sh [BUILD_DIR] [BUILD_TYPE] [TARGET...]
# Defaults: build/ Release, all targets. The executable lands at BUILD_DIR/bin/nupipe. The CUDA
# backend is built when nvcc is found (NUPIPE_CUDA=AUTO); NUPIPE_CMAKE_ARGS adds CMake options,
# e.g. NUPIPE_CMAKE_ARGS=-DNUPIPE_CUDA=OFF for a cpu-only build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
type=${2:-Release}
shift $(( $# > 2 ? 2 : $# ))
# shellcheck disable=SC2086
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" ${NUPIPE_CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
