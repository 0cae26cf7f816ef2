#!/usr/bin/env bash
# pipeline.sh: measured 1F1B bubble fraction for p = 2, 4 and m = 4, 8, 16 next to the ideal
# (p - 1) / (m + p - 1), and tokens/s of pipeline 2 x data 2 against pipeline 1 x data 4 on the
# same model and global batch, all measured in one run.
#
#   scripts/bench/pipeline.sh                     # defaults below
#   N_LAYER=8 D_MODEL=256 SEQ=128 STEPS=5 scripts/bench/pipeline.sh
#
# Environment: N_LAYER (8), D_MODEL (128), N_HEAD (4), SEQ (64), MICRO (1 sequence per
# micro-batch), STEPS (5; the first is warm-up), BUILD_DIR (build).
# bubble_fraction is the idle share of the pipeline phase measured from each rank's forward and
# backward spans, averaged over ranks. With more ranks than cores, ranks time-share the cores:
# a rank waiting for the CPU counts as idle, so measured bubbles sit above the ideal there.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
N_LAYER=${N_LAYER:-8} D_MODEL=${D_MODEL:-128} N_HEAD=${N_HEAD:-4} SEQ=${SEQ:-64}
MICRO=${MICRO:-1} STEPS=${STEPS:-5} BUILD_DIR=${BUILD_DIR:-build}
NUPIPE="$BUILD_DIR/bin/nupipe"
if [ ! -x "$NUPIPE" ]; then
  echo "pipeline: $NUPIPE is missing; build first: cmake -S . -B $BUILD_DIR && cmake --build $BUILD_DIR -j" >&2
  exit 1
fi
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-pipeline.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
status=0

# run NAME RANKS PIPELINE DATA GLOBAL_BATCH -> prints "median_bubble median_tokens_per_s"
run() {
  local dir="$TMP/$1"
  if ! mpirun --oversubscribe -np "$2" "$NUPIPE" train configs/tiny.toml \
      --set model.n_layer="$N_LAYER" --set model.d_model="$D_MODEL" --set model.n_head="$N_HEAD" \
      --set model.seq_len="$SEQ" --set parallel.pipeline="$3" --set parallel.data="$4" \
      --set parallel.stage_layers=uniform --set parallel.schedule=1f1b \
      --set train.micro_batch="$MICRO" --set train.global_batch="$5" --set train.steps="$STEPS" \
      --set optim.warmup_steps=1 --set data.val= --set run.log_every=1 \
      --set runtime.threads=1 --set run.dir="$dir" >"$TMP/$1.log" 2>&1; then
    echo "pipeline: run $1 failed; its output:" >&2
    tail -5 "$TMP/$1.log" >&2
    echo "n/a n/a"
    return 1
  fi
  /usr/bin/python3 - "$dir/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]  # the first step is warm-up
print(f"{statistics.median(r['bubble_fraction'] for r in rows):.3f} "
      f"{statistics.median(r['tokens_per_s'] for r in rows):.1f}")
PY
}

echo "model: $N_LAYER layers, d_model $D_MODEL, $N_HEAD heads, seq $SEQ, micro-batch $MICRO; $STEPS steps, median after the first; $(nproc) cores"
echo
printf "%-4s %-4s %-16s %-16s\n" p m "measured bubble" "ideal (p-1)/(m+p-1)"
for p in 2 4; do
  for m in 4 8 16; do
    read -r bubble _ < <(run "p${p}_m${m}" "$p" "$p" 1 $((m * MICRO))) || status=1
    ideal=$(awk -v p="$p" -v m="$m" 'BEGIN { printf "%.3f", (p - 1) / (m + p - 1) }')
    printf "%-4s %-4s %-16s %-16s\n" "$p" "$m" "$bubble" "$ideal"
  done
done

echo
gb=$((16 * MICRO))
read -r _ tps_pp < <(run pp2_dp2 4 2 2 "$gb") || status=1
read -r _ tps_dp < <(run pp1_dp4 4 1 4 "$gb") || status=1
printf "%-24s %12s\n" layout "tokens/s"
printf "%-24s %12s\n" "pipeline 2 x data 2" "$tps_pp" "pipeline 1 x data 4" "$tps_dp"
awk -v a="$tps_pp" -v b="$tps_dp" 'BEGIN { if (b > 0) printf "ratio (pp2 x dp2) / (dp4): %.3f\n", a / b }'
exit $status
