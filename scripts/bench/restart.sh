#!/usr/bin/env bash
# restart.sh: the time from a kill -9 to the first step of the relaunched job, for the
# gpt2-124m config (1.5 GB of checkpointed state) under scripts/train_with_restarts.sh, with
# the restart's phases as that script reports them (failure detected, job torn down,
# checkpoint loaded, first step done). Goal: kill -> first step <= 60 s. The wrapper's pause
# before a relaunch (--backoff) is set to 0: what is measured is the restart itself.
#
#   scripts/bench/restart.sh                 # 1 rank
#   NP=4 LAYOUT="--set parallel.pipeline=2 --set parallel.data=2 --set parallel.stage_layers=[5,7] --set train.global_batch=2" scripts/bench/restart.sh
#
# Environment: NP (1), LAYOUT (extra --set flags), CONFIG (configs/gpt2-124m.toml), BUILD_DIR,
# MPIEXEC (mpirun), MPIFLAGS, KEEP_TMP=1.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
set -f
NP=${NP:-1}
LAYOUT=${LAYOUT:-"--set parallel.pipeline=1 --set parallel.data=1"}
CONFIG=${CONFIG:-configs/gpt2-124m.toml}
BUILD_DIR=${BUILD_DIR:-build}
MPIEXEC=${MPIEXEC:-mpirun}
if [ -z "${MPIFLAGS+x}" ]; then
  MPIFLAGS="--oversubscribe"
  [ "$(id -u)" = 0 ] && MPIFLAGS="$MPIFLAGS --allow-run-as-root"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-restart.XXXXXX") || exit 1
[ "${KEEP_TMP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
RUN=$WORK/run LOG=$WORK/restarts.log
# shellcheck disable=SC2086
scripts/train_with_restarts.sh --max-restarts 1 --backoff 0 -- $MPIEXEC $MPIFLAGS -np "$NP" \
  "$BUILD_DIR/bin/nupipe" train "$CONFIG" --set run.dir="$RUN" --set train.steps=6 \
  --set checkpoint.every=2 --set checkpoint.keep=1 --set train.global_batch=1 $LAYOUT \
  >"$LOG" 2>&1 &
SUP=$!
# Kill a rank once a checkpoint is committed and a later step is under way.
until [ -d "$RUN/checkpoints/step_00000002" ] && grep -q "step 3/" "$LOG" 2>/dev/null; do
  kill -0 "$SUP" 2>/dev/null || { echo "the job ended before the kill"; tail "$LOG"; exit 1; }
  sleep 0.2
done
victim=""
for p in $(pgrep -x nupipe); do
  tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qxF "run.dir=$RUN" && victim=$p
done
[ -n "$victim" ] || { echo "no rank found"; exit 1; }
t_kill=$EPOCHREALTIME
kill -KILL "$victim"
# The relaunched job's first step line (its log shows the first step of every start).
until [ "$(grep -c 'checkpoint loaded' "$LOG")" -ge 1 ] && \
      awk '/checkpoint loaded/ { seen = 1 } seen && /\] step [0-9]+\// { found = 1 } END { exit !found }' "$LOG"; do
  kill -0 "$SUP" 2>/dev/null || break
  sleep 0.05
done
t_first=$EPOCHREALTIME
wait "$SUP"
rc=$?
grep -E '^\[restarts\]' "$LOG"
grep -E 'checkpoint: resuming|checkpoint loaded' "$LOG" | cut -c1-200
awk -v a="$t_kill" -v b="$t_first" -v np="$NP" -v rc="$rc" 'BEGIN {
  printf "kill -9 -> first step of the relaunched job: %.1f s (%d rank(s); goal <= 60 s); final exit %d\n", b - a, np, rc }'
[ "$rc" -eq 0 ]
