#!/usr/bin/env bash
# kill_resume.sh: randomized kill -9 trials. Each trial trains the 4-rank layout of
# tests/fault/checkpoint_cases.py (pipeline 2 [1,3] x data 2, ZeRO-1, chunked loss, 24 steps,
# a checkpoint every 8), kills a random rank either at a random moment or while a checkpoint
# is being written, relaunches the same command, and compares the finished run with the
# uninterrupted one bit for bit. Reports how many of how many ended bitwise equal and how many
# left an unusable newest checkpoint (the goal: all, and none).
#
#   scripts/bench/kill_resume.sh            # 20 trials
#   TRIALS=100 scripts/bench/kill_resume.sh
#   ASYNC=1 scripts/bench/kill_resume.sh    # checkpoint.async = true, against the sync run
#
# Environment: TRIALS (20), ASYNC (0), BUILD_DIR (build), MPIEXEC (mpirun), MPIFLAGS
# (--oversubscribe), KEEP_TMP=1. Exit 0 when every trial ended bitwise equal with a usable
# checkpoint. Kills that landed while a save was in progress (a step_N.tmp present: with
# ASYNC=1, a background write beside training) are counted separately.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
TRIALS=${TRIALS:-20}
ASYNC=${ASYNC:-0}
prefix=""; [ "$ASYNC" = 1 ] && prefix=async_
BUILD_DIR=${BUILD_DIR:-build}
MPIEXEC=${MPIEXEC:-mpirun}
MPIFLAGS=${MPIFLAGS:---oversubscribe}
[ -x "$BUILD_DIR/bin/nupipe" ] && [ -x "$BUILD_DIR/bin/train_and_dump" ] ||
  { echo "build first: scripts/build.sh build Release"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-kill-resume.XXXXXX") || exit 1
[ "${KEEP_TMP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
cases() {
  # shellcheck disable=SC2086
  /usr/bin/python3 tests/fault/checkpoint_cases.py "$1" "$WORK" "$BUILD_DIR/bin/nupipe" \
    "$BUILD_DIR/bin/train_and_dump" configs/tiny.toml "$MPIEXEC" $MPIFLAGS
}
cases reference >/dev/null || { echo "the uninterrupted run failed"; exit 1; }

bitwise=0 unusable=0 failed=0 during_write=0
for t in $(seq 1 "$TRIALS"); do
  if [ $((t % 2)) -eq 0 ]; then kind=${prefix}kill_during_write; else kind=${prefix}kill_random; fi
  out=$(NUPIPE_TRIAL_SEED=$((1000 + t)) cases "$kind" 2>&1)
  rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^(async_)?kill_(random|write):' | tail -n 1)
  echo "trial $t: ${line:-$(printf '%s\n' "$out" | tail -n 3)}"
  case "$line" in *"newest usable: False"*) unusable=$((unusable + 1)) ;; esac
  case "$line" in *"in progress at the kill: yes"*) during_write=$((during_write + 1)) ;; esac
  if [ $rc -eq 0 ]; then bitwise=$((bitwise + 1)); else failed=$((failed + 1)); echo "$out" | tail -n 5; fi
done
echo
echo "kill -9 trials: $TRIALS, checkpoint.async = $([ "$ASYNC" = 1 ] && echo true || echo false)" \
  "($during_write while a save was in progress)"
echo "  ended bitwise equal to the uninterrupted run: $bitwise of $TRIALS"
echo "  left an unusable newest checkpoint:           $unusable of $TRIALS"
[ "$failed" -eq 0 ] && [ "$unusable" -eq 0 ]
