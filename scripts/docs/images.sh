#!/usr/bin/env bash
# images.sh: redraws docs/img/*.png with today's build: the planner's 8-block plot (nupipe plan
# --json, scripts/plot_plan.py), the demo's last step (a demo run with run.trace, plot_trace.py)
# and, with PIPELINE=1, the p = 4, m = 8 trace of scripts/bench/pipeline.sh (minutes).
# Environment: BUILD_DIR (build), PIPELINE (0). Look at the images before committing them.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
NUPIPE=$BUILD_DIR/bin/nupipe
[ -x "$NUPIPE" ] || { echo "error: $NUPIPE does not exist; build first (scripts/build.sh)"; exit 2; }
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told twice
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-images.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# docs/planner.md and README.md: 8 blocks on 4 stages within 6.1 MiB per rank.
"$NUPIPE" plan configs/tiny.toml --set model.n_layer=8 --set parallel.pipeline=4 \
  --set parallel.data=1 --set parallel.stage_layers=uniform --memory-gib 0.006 --json \
  > "$tmp/plan.json"
/usr/bin/python3 scripts/plot_plan.py "$tmp/plan.json" docs/img/plan_8l_p4.png

# README.md: the demo's command (scripts/demo.sh), its trace's last step.
run_dir="runs/demo-$(date +%Y%m%d-%H%M%S)"
mpirun -np 4 --oversubscribe "$NUPIPE" train configs/tiny.toml --set run.dir="$run_dir" \
  --set run.trace=true > "$tmp/demo.log" 2>&1 || { tail -20 "$tmp/demo.log"; exit 1; }
/usr/bin/python3 scripts/plot_trace.py "$run_dir/trace.json" docs/img/demo_trace.png

# docs/pipeline.md: the bench's p = 4, m = 8 run (its tables are printed for the page too).
if [ "${PIPELINE:-0}" = 1 ]; then
  TRACE_PNG=docs/img/pipeline_1f1b_p4_m8.png BUILD_DIR=$BUILD_DIR scripts/bench/pipeline.sh
fi
