#!/usr/bin/env bash
# plan_vs_measured.sh: the planner's simulated step time and bubble (calibrated on this machine)
# next to a real training run's, for several splits of one config, side by side.
#
#   scripts/bench/plan_vs_measured.sh                       # tiny.toml, 2 stages, [1,3] [2,2] [3,1]
#   SPLITS="1,3 2,2" STEPS=40 scripts/bench/plan_vs_measured.sh
#
# For each split: `nupipe plan --compare SPLIT --json` with one `--calibrate` of this machine's
# cpu backend for all splits (each pass of a block, the embedding and the head, and the
# optimizer step, timed apart) gives the predicted step and bubble; `mpirun -np P
# nupipe train` with that split (data 1, one thread per rank) gives the measured median step_ms
# and bubble_fraction over steps 5.. of metrics.jsonl.
#
# Environment: CONFIG (configs/tiny.toml), PIPELINE (2), SPLITS ("1,3 2,2 3,1"), STEPS (30),
# BUILD_DIR (build), MPIRUN (mpirun --oversubscribe), PYTHON (/usr/bin/python3).
# With PIPELINE ranks on no more cores than the host has, ranks do not time-share.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${CONFIG:-configs/tiny.toml}
PIPELINE=${PIPELINE:-2}
SPLITS=${SPLITS:-"1,3 2,2 3,1"}
STEPS=${STEPS:-30}
BUILD_DIR=${BUILD_DIR:-build}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
PYTHON=${PYTHON:-/usr/bin/python3}
NUPIPE=$BUILD_DIR/bin/nupipe
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--set parallel.pipeline="$PIPELINE" --set parallel.data=1 --set runtime.threads=1
        --set train.val_every=0 --set checkpoint.every=0)

printf "%-10s %14s %14s %10s %18s %18s\n" split "predicted ms" "measured ms" ratio \
  "predicted bubble" "measured bubble"
for split in $SPLITS; do
  # One calibration (timed with the first split) predicts every split.
  if [ -f "$tmp/calibration.json" ]; then times=(--calibration "$tmp/calibration.json")
  else times=(--calibrate --save-calibration "$tmp/calibration.json"); fi
  "$NUPIPE" plan "$CONFIG" "${common[@]}" --set parallel.stage_layers=uniform "${times[@]}" \
    --compare "$split" --json >"$tmp/plan.json" 2>>"$tmp/calibration.txt"
  $MPIRUN -np "$PIPELINE" "$NUPIPE" train "$CONFIG" "${common[@]}" \
    --set parallel.stage_layers="[$split]" --set train.steps="$STEPS" \
    --set run.dir="$tmp/run_${split//,/_}" --set run.log_every=1 \
    >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; exit 1; }
  "$PYTHON" - "$tmp/plan.json" "$tmp/run_${split//,/_}/metrics.jsonl" "$split" <<'EOF'
import json, statistics, sys
plan = next(p for p in json.load(open(sys.argv[1]))["plans"] if p["name"] == "compare")
recs = [json.loads(l) for l in open(sys.argv[2])]
recs = [r for r in recs if r["step"] > 5 and "step_ms" in r]  # steps count from 1: the first 5 warm up
ms = statistics.median(r["step_ms"] for r in recs)
bub = statistics.median(r["bubble_fraction"] for r in recs)
print("%-10s %14.1f %14.1f %10.2f %17.1f%% %17.1f%%" % ("[" + sys.argv[3] + "]", plan["step_ms"], ms,
      ms / plan["step_ms"], 100 * plan["bubble_fraction"], 100 * bub))
EOF
done
head -1 "$tmp/calibration.txt"
