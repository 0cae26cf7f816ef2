#!/usr/bin/env bash
# pipeline.sh: the measured pipeline bubble of the 1F1B schedule next to the ideal
# (p-1)/(m+p-1), and tokens/s of pipeline 2 x data 2 against pipeline 1 x data 4, side by side.
#
#   scripts/bench/pipeline.sh                      # 8 blocks of width 256, seq 128, micro 2
#   PIPES="2 4 8" MICROBATCHES="4 8 16 32" STEPS=8 scripts/bench/pipeline.sh
#
# Part 1: for each p in PIPES and m in MICROBATCHES, one run of `mpirun -np p` with
# parallel.pipeline = p, data = 1, stage_layers = "uniform", schedule = "1f1b",
# train.global_batch = m x MICRO; two bubble figures, both medians over the steps after the first:
#   metrics  bubble_fraction from metrics.jsonl: each rank's idle share of the window from the
#            step's start to the return of its world all-reduce (a moment common to all
#            ranks), averaged over the ranks;
#   trace    from trace.json, over one window common to all stages (first pipeline span of any
#            rank to the last forward/backward of any rank): 1 - busy / (p x window). Both are
#            the quantity (p-1)/(m+p-1) describes.
# `>cores` is the share of the trace window during which more ranks computed than the host has
# cores (they time-share then, and every span in that window is stretched).
# Part 2: `mpirun -np 4` twice on the same model and global batch (DP_BATCH sequences):
# pipeline 2 x data 2 and pipeline 1 x data 4; median tokens/s and their ratio.
# The run p = TRACE_P, m = TRACE_M also renders its trace with scripts/plot_trace.py to
# TRACE_PNG (runs/bench/pipeline_1f1b_p4_m8.png; TRACE_PNG=docs/img/pipeline_1f1b_p4_m8.png
# replaces the image docs/pipeline.md shows; TRACE_PNG= to skip).
#
# Environment: N_LAYER (8), D_MODEL (256), N_HEAD (4), SEQ (128), MICRO (2 sequences per
# microbatch), STEPS (5; the first is warm-up), THREADS (1 per rank), PIPES ("2 4"),
# MICROBATCHES ("4 8 16"), DP_BATCH (16), SCHEDULE (1f1b), CONFIG (configs/tiny.toml: vocab and
# data come from it), TRACE_P (4), TRACE_M (8), TRACE_PNG, BUILD_DIR (build), MPIRUN
# (mpirun --oversubscribe), KEEP_TMP=1, PYTHON.
# Up to max(PIPES) ranks and 4 in part 2 share this host's cores: with more ranks than cores the
# ranks time-share and the idle share of a stage is partly time lost to its neighbours. Keep
# THREADS=1 and a model whose microbatch takes tens of ms per stage, and read `>cores`.
# Exit: 0 everything measured; 1 some run could not be measured (its cells read n/a); 2 bad usage.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
CONFIG=${CONFIG:-configs/tiny.toml}
N_LAYER=${N_LAYER:-8}
D_MODEL=${D_MODEL:-256}
N_HEAD=${N_HEAD:-4}
SEQ=${SEQ:-128}
MICRO=${MICRO:-2}
STEPS=${STEPS:-5}
THREADS=${THREADS:-1}
PIPES=${PIPES:-2 4}
MICROBATCHES=${MICROBATCHES:-4 8 16}
DP_BATCH=${DP_BATCH:-16}
SCHEDULE=${SCHEDULE:-1f1b}
TRACE_P=${TRACE_P:-4}
TRACE_M=${TRACE_M:-8}
TRACE_PNG=${TRACE_PNG-runs/bench/pipeline_1f1b_p4_m8.png}
BUILD_DIR=${BUILD_DIR:-build}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
CORES=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

note() { echo "pipeline: $*" >&2; }

if [ "$STEPS" -lt 2 ]; then
  note "STEPS=$STEPS: need at least 2 (the first step is warm-up and not counted)"
  exit 2
fi
if [ ! -f "$CONFIG" ]; then
  note "config $CONFIG not found"
  exit 2
fi
NUPIPE="$BUILD_DIR/bin/nupipe"
if [ ! -x "$NUPIPE" ]; then
  note "ERROR: $NUPIPE not found; build it first:"
  note "       cmake -S . -B $BUILD_DIR -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD_DIR -j --target nupipe"
  exit 1
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
if [ -n "$build_type" ] && [ "$build_type" != Release ]; then
  note "WARNING: $BUILD_DIR is a '$build_type' build; its numbers are not Release numbers"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-pipeline.XXXXXX") || exit 1
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "pipeline: keeping $TMP"
else
  trap 'rm -rf "$TMP"' EXIT
fi
status=0
t_begin=$(date +%s)

# run NAME PIPELINE DATA GLOBAL_BATCH: one training run into $TMP/NAME; its log in $TMP/NAME.log.
run() {
  local name=$1 pp=$2 dp=$3 gb=$4
  echo "== $name: $MPIRUN -np $((pp * dp)) $NUPIPE train $CONFIG (pipeline $pp x data $dp," \
       "global_batch $gb, micro_batch $MICRO)"
  # shellcheck disable=SC2086  # MPIRUN is a command line
  if ! $MPIRUN -np $((pp * dp)) "$NUPIPE" train "$CONFIG" \
      --set model.n_layer="$N_LAYER" --set model.d_model="$D_MODEL" --set model.n_head="$N_HEAD" \
      --set model.seq_len="$SEQ" --set data.val= \
      --set parallel.pipeline="$pp" --set parallel.data="$dp" \
      --set parallel.stage_layers=uniform --set parallel.schedule="$SCHEDULE" --set parallel.zero=0 \
      --set train.micro_batch="$MICRO" --set train.global_batch="$gb" \
      --set train.steps="$STEPS" --set optim.warmup_steps=0 \
      --set run.log_every=1 --set run.trace=true --set run.dir="$TMP/$name" \
      --set runtime.threads="$THREADS" >"$TMP/$name.log" 2>&1; then
    tail -n 20 "$TMP/$name.log" >&2
    note "ERROR: run $name failed (output above)"
    status=1
    return 1
  fi
  grep -E 'stage layout|^\[[^]]*\] (stage|[0-9]+) ' "$TMP/$name.log" | sed 's/^\[[^]]*\] /   /'
  return 0
}

# ---- part 1: bubble of 1F1B ---------------------------------------------------------------
for p in $PIPES; do
  for m in $MICROBATCHES; do
    run "p${p}_m${m}" "$p" 1 $((m * MICRO))
  done
done

# ---- part 2: pipeline 2 x data 2 vs pipeline 1 x data 4 -----------------------------------
run pp2_dp2 2 2 "$DP_BATCH"
run pp1_dp4 1 4 "$DP_BATCH"

# ---- trace image --------------------------------------------------------------------------
if [ -n "$TRACE_PNG" ]; then
  trace="$TMP/p${TRACE_P}_m${TRACE_M}/trace.json"
  if [ -f "$trace" ]; then
    mkdir -p "$(dirname "$TRACE_PNG")"
    if "$PYTHON" scripts/plot_trace.py "$trace" "$TRACE_PNG"; then
      note "the trace of p=$TRACE_P m=$TRACE_M is drawn in $TRACE_PNG"
    else
      note "ERROR: plot_trace.py failed on $trace"; status=1
    fi
  else
    note "ERROR: no trace for p=$TRACE_P m=$TRACE_M (is it in PIPES/MICROBATCHES?)"
    status=1
  fi
fi

# ---- tables -------------------------------------------------------------------------------
echo
echo "pipeline: n_layer=$N_LAYER d_model=$D_MODEL n_head=$N_HEAD seq=$SEQ micro_batch=$MICRO" \
     "schedule=$SCHEDULE threads/rank=$THREADS steps=$STEPS (median over steps after the first)" \
     "host cores=$CORES build=${build_type:-?}"
"$PYTHON" - "$TMP" "$CORES" "$PIPES" "$MICROBATCHES" <<'EOF' || status=1
import json, os, statistics, sys

tmp, cores = sys.argv[1], int(sys.argv[2])
pipes, mbs = [int(x) for x in sys.argv[3].split()], [int(x) for x in sys.argv[4].split()]
bad = False
COMPUTE = ("forward", "backward", "backward_input", "backward_weight")

def timed_metrics(name):
    """metrics.jsonl rows after the first step, or None."""
    try:
        rows = [json.loads(l) for l in open(os.path.join(tmp, name, "metrics.jsonl")) if l.strip()]
    except (OSError, ValueError):
        return None
    rows = [r for r in rows if "step" in r]
    first = min((r["step"] for r in rows), default=None)
    rows = [r for r in rows if r["step"] != first]
    return rows or None

def median(rows, key):
    vals = [r[key] for r in rows if key in r] if rows else []
    return statistics.median(vals) if vals and len(vals) == len(rows) else None

def trace_bubble(name):
    """(bubble over the common window, share of it with more ranks computing than cores)."""
    try:
        events = json.load(open(os.path.join(tmp, name, "trace.json")))["traceEvents"]
    except (OSError, ValueError, KeyError):
        return None, None
    spans = [e for e in events if e.get("ph") == "X"]
    ranks = len({e["pid"] for e in spans})
    steps = sorted({e["args"]["step"] for e in spans})[1:]
    bubbles, over = [], []
    for st in steps:
        pipe = [e for e in spans if e["args"]["step"] == st
                and e["name"] in COMPUTE + ("send", "recv", "send-wait")]
        comp = [e for e in pipe if e["name"] in COMPUTE]
        if not comp:
            continue
        t0 = min(e["ts"] for e in pipe)
        t1 = max(e["ts"] + e["dur"] for e in comp)
        busy = sum(e["dur"] for e in comp)
        bubbles.append(1.0 - busy / (ranks * (t1 - t0)))
        edges = sorted([(e["ts"], 1) for e in comp] + [(e["ts"] + e["dur"], -1) for e in comp])
        level, last, crowded = 0, t0, 0.0
        for t, d in edges:
            if level > cores:
                crowded += t - last
            level, last = level + d, t
        over.append(crowded / (t1 - t0))
    if not bubbles:
        return None, None
    return statistics.median(bubbles), statistics.median(over)

pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
print()
print("1F1B bubble, data = 1, uniform split:")
print(f"{'p':>3} {'m':>4} {'ideal':>8} {'metrics':>8} {'trace':>8} {'>cores':>8} {'step ms':>9}")
for p in pipes:
    for m in mbs:
        name = f"p{p}_m{m}"
        rows = timed_metrics(name)
        b, ms = median(rows, "bubble_fraction"), median(rows, "step_ms")
        tb, over = trace_bubble(name)
        bad |= b is None or tb is None
        ideal = (p - 1) / (m + p - 1)
        print(f"{p:>3} {m:>4} {pct(ideal):>8} {pct(b):>8} {pct(tb):>8} {pct(over):>8} "
              f"{'n/a' if ms is None else f'{ms:.0f}':>9}")

print()
print("throughput, 4 ranks each, same model and global batch:")
tps = {}
for name, label in (("pp2_dp2", "pipeline 2 x data 2"), ("pp1_dp4", "pipeline 1 x data 4")):
    rows = timed_metrics(name)
    tps[name] = median(rows, "tokens_per_s")
    b = median(rows, "bubble_fraction")
    bad |= tps[name] is None
    print(f"{label:<24}{'n/a' if tps[name] is None else f'{tps[name]:.0f}':>10} tokens/s"
          + (f"   (bubble {pct(b)})" if name == "pp2_dp2" else ""))
a, b = tps["pp2_dp2"], tps["pp1_dp4"]
print(f"{'ratio pp2xdp2 / pp1xdp4':<24}{f'{a / b:.3f}' if a and b else 'n/a':>10}")
sys.exit(1 if bad else 0)
EOF
echo "pipeline: total runtime $(( $(date +%s) - t_begin )) s"
exit $status
