#!/usr/bin/env bash
# fuzz.sh: runs nupipe on thousands of mutated configs, token files and checkpoints
# (tests/fuzz/fuzz.py, tests/fuzz/mutators.py) and prints the count of each outcome per kind;
# exit 1 when any case is a defect (a crash, a hang, an undocumented exit code, a failure without
# an error line, non-UTF-8 output, a sanitizer report, a checkpoint changed by a failed resume),
# each kept with a repro.sh under the work directory.
#   scripts/bench/fuzz.sh [CASES] [SEED] [BUILD_DIR]     (default 3000 cases, seed 1, build/)
# A Sanitize build (scripts/test.sh's build-asan/) is run with the sanitizers' options:
#   scripts/bench/fuzz.sh 600 7 build-asan
# The suite runs a fixed-seed subset of 16 cases under the sanitizers (ctest sanitize_fuzz).
set -euo pipefail
cd "$(dirname "$0")/../.."
cases=${1:-3000}
seed=${2:-1}
dir=${3:-build}
san=()
grep -q '^CMAKE_BUILD_TYPE:STRING=Sanitize$' "$dir/CMakeCache.txt" 2>/dev/null && san=(--sanitized)
exec /usr/bin/python3 tests/fuzz/fuzz.py --nupipe "$dir/bin/nupipe" --config configs/tiny.toml \
  --work "$dir/fuzz-$seed" --cases "$cases" --seed "$seed" --jobs "$(nproc)" "${san[@]}"
