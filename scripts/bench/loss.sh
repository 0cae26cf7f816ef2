#!/usr/bin/env bash
# loss.sh: the chunked loss (train.loss_chunk) against the unchunked one, side by side in one
# run: peak loss-workspace bytes and median time of LM head + cross-entropy forward+backward.
#
#   scripts/bench/loss.sh                          # V=50257, C=768, 8192 tokens, K=4096,1024,256
#   CHUNKS=2048,512 TOKENS=4096 REPS=5 THREADS=8 scripts/bench/loss.sh
#
# Environment: VOCAB (50257), D_MODEL (768), TOKENS (8192), CHUNKS (4096,1024,256; the
# unchunked column is always measured), REPS (3 timed rounds after one warm-up round), THREADS
# (all cores), EVAL=1 (also time the forward-only path), BUILD_DIR (build), SKIP_BUILD=1.
# Absolute numbers on shared machines are noise; the ratios are the result.
# Exit: 0 measured; 1 the bench could not be built or failed; 2 bad usage.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
VOCAB=${VOCAB:-50257}
D_MODEL=${D_MODEL:-768}
TOKENS=${TOKENS:-8192}
CHUNKS=${CHUNKS:-4096,1024,256}
REPS=${REPS:-3}
THREADS=${THREADS:-$(nproc)}
BUILD_DIR=${BUILD_DIR:-build}

note() { echo "loss: $*" >&2; }

if [ "$REPS" -lt 1 ]; then
  note "REPS=$REPS: need at least 1 timed round"
  exit 2
fi

# ---- build --------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log=$(mktemp "${TMPDIR:-/tmp}/nupipe-loss-build.XXXXXX") || exit 1
  trap 'rm -f "$log"' EXIT
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1 ||
      { tail -n 30 "$log" >&2; note "cmake configure failed (log above)"; exit 1; }
  fi
  # Re-configure first: a build dir made before loss_bench existed has no such target yet.
  { cmake "$BUILD_DIR" && cmake --build "$BUILD_DIR" -j --target loss_bench; } >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; note "building loss_bench failed (log above)"; exit 1; }
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
if [ -n "$build_type" ] && [ "$build_type" != Release ]; then
  note "WARNING: $BUILD_DIR is a '$build_type' build; these are not Release numbers"
fi

BENCH="$BUILD_DIR/bin/loss_bench"
if [ ! -x "$BENCH" ]; then
  note "ERROR: $BENCH not found (build it: cmake --build $BUILD_DIR -j --target loss_bench)"
  exit 1
fi

# ---- measure ------------------------------------------------------------------------------
eval_flag=""
[ "${EVAL:-0}" = 1 ] && eval_flag=--eval
echo "== $BENCH --vocab $VOCAB --d-model $D_MODEL --tokens $TOKENS --chunks 0,$CHUNKS" \
  "--reps $REPS --threads $THREADS $eval_flag (build=${build_type:-?})"
"$BENCH" --vocab "$VOCAB" --d-model "$D_MODEL" --tokens "$TOKENS" --chunks "0,$CHUNKS" \
  --reps "$REPS" --threads "$THREADS" $eval_flag ||
  { note "ERROR: loss_bench failed (exit $?)"; exit 1; }
