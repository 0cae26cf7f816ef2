#!/usr/bin/env bash
# build.sh: configures and builds nupipe. Usage: scripts/build.sh [BUILD_DIR] [BUILD_TYPE] [TARGET...]
# Defaults: build/ Release, all targets. The executable lands at BUILD_DIR/bin/nupipe.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
type=${2:-Release}
shift $(( $# > 2 ? 2 : $# ))
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
