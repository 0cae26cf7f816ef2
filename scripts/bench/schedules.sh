#!/usr/bin/env bash
# schedules.sh: the measured step time and bubble of each pipeline schedule side by side with
# 1F1B's, in one run, interleaved over rounds, next to the simulator's prediction.
#
#   scripts/bench/schedules.sh                       # pipeline 2, 8 blocks of width 256, seq 128
#   ROUNDS=5 MICROBATCHES="4 8 16" scripts/bench/schedules.sh
#
# Every round runs each (m, schedule) once, the schedules in a rotated order each round, with
# `mpirun -np 2`: pipeline 2 x data 1, stage_layers "uniform", runtime.threads = 1 (one rank
# per core on a 2-core host: no oversubscription), train.global_batch = m x MICRO. Per run:
# the median step_ms and bubble_fraction of metrics.jsonl over the steps after the first.
# Per cell: the median over rounds and the spread (min-max). The prediction is `nupipe plan`
# with one `--calibrate` of this host for every cell (each pass of a block, the embedding and
# the head timed apart, B and W too), the same layout and schedule.
#
# TRACE_DIR=docs/img: after the rounds, one more run per schedule at m = TRACE_M (4) with
# run.trace = true, its last step drawn by scripts/plot_trace.py to
# TRACE_DIR/schedule_<schedule>_p2_m<TRACE_M>.png (the timelines docs/pipeline.md shows).
#
# Environment: SCHEDULES ("1f1b zb-h1 zb-h2"; the first is the reference), MICROBATCHES ("4 8"),
# ROUNDS (3), STEPS (5), N_LAYER (8), D_MODEL (256), N_HEAD (4), SEQ (128), MICRO (2),
# CONFIG (configs/tiny.toml), BUILD_DIR (build), MPIRUN (mpirun), KEEP_TMP=1, PYTHON.
# Exit: 0 everything measured; 1 a run failed; 2 bad usage.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
CONFIG=${CONFIG:-configs/tiny.toml}
SCHEDULES=${SCHEDULES:-1f1b zb-h1 zb-h2}
MICROBATCHES=${MICROBATCHES:-4 8}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-5}
N_LAYER=${N_LAYER:-8}
D_MODEL=${D_MODEL:-256}
N_HEAD=${N_HEAD:-4}
SEQ=${SEQ:-128}
MICRO=${MICRO:-2}
BUILD_DIR=${BUILD_DIR:-build}
MPIRUN=${MPIRUN:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

note() { echo "schedules: $*" >&2; }

NUPIPE="$BUILD_DIR/bin/nupipe"
if [ ! -x "$NUPIPE" ]; then
  note "ERROR: $NUPIPE not found; build it first (scripts/build.sh $BUILD_DIR Release nupipe)"
  exit 2
fi
if [ "$STEPS" -lt 2 ] || [ "$ROUNDS" -lt 1 ]; then
  note "STEPS=$STEPS ROUNDS=$ROUNDS: need STEPS >= 2 (the first is warm-up) and ROUNDS >= 1"
  exit 2
fi
if [ "$(nproc)" -lt 2 ]; then
  note "WARNING: $(nproc) core(s): the two ranks share a core and the bubble is not the schedule's"
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-schedules.XXXXXX") || exit 1
if [ "${KEEP_TMP:-0}" = 1 ]; then note "keeping $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi
status=0

model_sets() {
  local m=$1 sched=$2
  echo --set model.n_layer="$N_LAYER" --set model.d_model="$D_MODEL" \
    --set model.n_head="$N_HEAD" --set model.seq_len="$SEQ" \
    --set parallel.pipeline=2 --set parallel.data=1 --set parallel.stage_layers=uniform \
    --set parallel.schedule="$sched" --set train.micro_batch="$MICRO" \
    --set train.global_batch=$((m * MICRO)) --set runtime.threads=1
}

# The predictions, once per (m, schedule), from one calibration (timed with the first).
for m in $MICROBATCHES; do
  for sched in $SCHEDULES; do
    if [ -f "$TMP/calibration.json" ]; then times=(--calibration "$TMP/calibration.json")
    else times=(--calibrate --save-calibration "$TMP/calibration.json"); fi
    # shellcheck disable=SC2046  # model_sets is a list of arguments
    if ! "$NUPIPE" plan "$CONFIG" $(model_sets "$m" "$sched") "${times[@]}" --json \
        >"$TMP/plan_${m}_${sched}.json" 2>"$TMP/plan_${m}_${sched}.log"; then
      note "ERROR: nupipe plan failed for m=$m $sched:"; tail -n 5 "$TMP/plan_${m}_${sched}.log" >&2
      status=1
    fi
  done
done

read -r -a order <<<"$SCHEDULES"
for ((round = 1; round <= ROUNDS; ++round)); do
  for m in $MICROBATCHES; do
    for ((i = 0; i < ${#order[@]}; ++i)); do
      sched=${order[$(((i + round) % ${#order[@]}))]}
      name="r${round}_m${m}_${sched}"
      echo "== round $round, m=$m, $sched"
      # shellcheck disable=SC2046,SC2086  # MPIRUN is a command line; model_sets a list
      if ! $MPIRUN -np 2 "$NUPIPE" train "$CONFIG" $(model_sets "$m" "$sched") --set data.val= \
          --set train.steps="$STEPS" --set optim.warmup_steps=0 --set run.log_every=1 \
          --set checkpoint.every=0 --set run.dir="$TMP/$name" >"$TMP/$name.log" 2>&1; then
        tail -n 10 "$TMP/$name.log" >&2
        note "ERROR: run $name failed (output above)"
        status=1
      fi
    done
  done
done

if [ -n "${TRACE_DIR:-}" ]; then
  mkdir -p "$TRACE_DIR"
  m=${TRACE_M:-4}
  for sched in $SCHEDULES; do
    name="trace_m${m}_${sched}"
    # shellcheck disable=SC2046,SC2086  # MPIRUN is a command line; model_sets a list
    if $MPIRUN -np 2 "$NUPIPE" train "$CONFIG" $(model_sets "$m" "$sched") --set data.val= \
        --set train.steps=3 --set optim.warmup_steps=0 --set run.log_every=1 \
        --set checkpoint.every=0 --set run.trace=true --set run.dir="$TMP/$name" \
        >"$TMP/$name.log" 2>&1 &&
       "$PYTHON" scripts/plot_trace.py "$TMP/$name/trace.json" \
        "$TRACE_DIR/schedule_${sched}_p2_m${m}.png" >/dev/null; then
      note "the trace of $sched at m=$m is drawn in $TRACE_DIR/schedule_${sched}_p2_m${m}.png"
    else
      tail -n 10 "$TMP/$name.log" >&2
      note "ERROR: the traced run $name failed (output above)"
      status=1
    fi
  done
fi

echo
echo "schedules: pipeline 2 x data 1, uniform split, n_layer=$N_LAYER d_model=$D_MODEL" \
     "n_head=$N_HEAD seq=$SEQ micro_batch=$MICRO, 1 thread per rank, $ROUNDS rounds x" \
     "$((STEPS - 1)) timed steps, host cores=$(nproc)"
[ -f "$TMP/plan_${MICROBATCHES%% *}_${SCHEDULES%% *}.log" ] &&
  head -n 1 "$TMP/plan_${MICROBATCHES%% *}_${SCHEDULES%% *}.log"
"$PYTHON" - "$TMP" "$ROUNDS" "$MICROBATCHES" "$SCHEDULES" <<'EOF' || status=1
import json, os, statistics, sys

tmp, rounds = sys.argv[1], int(sys.argv[2])
mbs, scheds = sys.argv[3].split(), sys.argv[4].split()
bad = False

def run_medians(name):
    try:
        rows = [json.loads(l) for l in open(os.path.join(tmp, name, "metrics.jsonl")) if l.strip()]
    except (OSError, ValueError):
        return None
    rows = [r for r in rows if "step_ms" in r]
    rows = [r for r in rows if r["step"] != min(x["step"] for x in rows)]
    if not rows:
        return None
    return (statistics.median(r["step_ms"] for r in rows),
            statistics.median(r["bubble_fraction"] for r in rows))

def predicted(m, s):
    try:
        plans = json.load(open(os.path.join(tmp, f"plan_{m}_{s}.json")))["plans"]
        p = next(p for p in plans if p["name"] == "uniform")
        return p["step_ms"], p["bubble_fraction"]
    except (OSError, ValueError, KeyError, StopIteration):
        return None

print(f"{'m':>3} {'schedule':<8} {'step ms':>9} {'spread':>15} {'bubble':>7} {'vs ref':>8} "
      f"{'bubble/ref':>10} {'pred ms':>8} {'pred bub':>8} {'meas/pred':>9}")
for m in mbs:
    ref = None
    for s in scheds:
        got = [run_medians(f"r{r}_m{m}_{s}") for r in range(1, rounds + 1)]
        if any(g is None for g in got):
            print(f"{m:>3} {s:<8} n/a (a run failed)")
            bad = True
            continue
        steps, bubbles = [g[0] for g in got], [g[1] for g in got]
        step, bubble = statistics.median(steps), statistics.median(bubbles)
        if ref is None:
            ref = (step, bubble)
        pred = predicted(m, s)
        print(f"{m:>3} {s:<8} {step:>9.1f} {min(steps):>7.1f}-{max(steps):<7.1f} "
              f"{100 * bubble:>6.1f}% {step / ref[0]:>8.3f} "
              f"{(bubble / ref[1] if ref[1] > 0 else float('nan')):>10.2f} "
              + (f"{pred[0]:>8.1f} {100 * pred[1]:>7.1f}% {step / pred[0]:>9.3f}" if pred
                 else f"{'n/a':>8} {'n/a':>8} {'n/a':>9}"))
sys.exit(1 if bad else 0)
EOF
exit $status
