#!/usr/bin/env bash
# cpu_step.sh: nupipe vs PyTorch training-step throughput on this CPU, side by side in one run
# (same model, batch and threads), once per precision, and nupipe's GFLOP/s against the OpenBLAS
# sgemm ceiling.
#
#   scripts/bench/cpu_step.sh                      # GPT-2 small width, 2 layers, 4 x 256 tokens
#   N_LAYER=4 SEQ=512 THREADS=8 PRECISIONS=fp32 scripts/bench/cpu_step.sh
#
# The PyTorch peer (torch_step.py) is a nanoGPT-style GPT-2 run as its users run it at its best:
# denormals flushed to zero, the fastest AdamW this torch offers (timed at its start-up), and for
# bf16 torch.autocast with fp32 master weights. nupipe runs with --set runtime.precision=<p>,
# once as it runs by default (IEEE subnormals) and once with runtime.flush_denormals = true
# (the "nupipe FTZ" columns); a precision nupipe rejects (exit 2) reads n/a and is not an error.
#
# Environment: N_LAYER (2), SEQ (256), BATCH (4 sequences per step), STEPS (5; the first is
# warm-up), THREADS (all cores), PRECISIONS ("fp32 bf16"), FLUSH_DENORMAL (1; 0 runs PyTorch
# without flushing denormals), CONFIG (configs/gpt2-124m.toml: d_model, n_head, vocab_size,
# tie_embeddings and the synthetic alphabet PyTorch draws its tokens from come from it),
# BUILD_DIR (build), SKIP_BUILD=1, KEEP_TMP=1, PYTHON.
# The table has one row per precision: tokens/s of both, their ratio, and the loss of step STEPS
# of each (a check of each precision against fp32 within one framework: data and LR schedule
# differ between the two). Absolute numbers on shared machines are noise; the ratios are the
# result (DESIGN.md).
# Exit: 0 all measured; 1 some part could not be measured (it reads n/a).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
CONFIG=${CONFIG:-configs/gpt2-124m.toml}
N_LAYER=${N_LAYER:-2}
SEQ=${SEQ:-256}
BATCH=${BATCH:-4}
STEPS=${STEPS:-5}
THREADS=${THREADS:-$(nproc)}
PRECISIONS=${PRECISIONS:-fp32 bf16}
FLUSH_DENORMAL=${FLUSH_DENORMAL:-1}
BUILD_DIR=${BUILD_DIR:-build}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-cpu-step.XXXXXX") || exit 1
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "cpu_step: keeping $TMP"
else
  trap 'rm -rf "$TMP"' EXIT
fi

note() { echo "cpu_step: $*" >&2; }
status=0

if [ "$STEPS" -lt 2 ]; then
  note "STEPS=$STEPS: need at least 2 (the first step is warm-up and not counted)"
  exit 2
fi
if [ ! -f "$CONFIG" ]; then
  note "config $CONFIG not found"
  exit 2
fi

# ---- build --------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$TMP/configure.log" 2>&1 ||
      { tail -n 30 "$TMP/configure.log" >&2; note "cmake configure failed (log above)"; }
  fi
  # Each target on its own, so that a broken nupipe build still leaves sgemm_peak measurable.
  for target in nupipe sgemm_peak; do
    if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
      cmake --build "$BUILD_DIR" -j --target "$target" >"$TMP/build-$target.log" 2>&1 ||
        { tail -n 30 "$TMP/build-$target.log" >&2; note "building $target failed (log above)"; }
    fi
  done
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
if [ -n "$build_type" ] && [ "$build_type" != Release ]; then
  note "WARNING: $BUILD_DIR is a '$build_type' build; nupipe's numbers are not Release numbers"
fi

# [model] of a TOML file, and the synthetic data's alphabet (0: not synthetic).
model_of() {
  "$PYTHON" - "$1" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    cfg = tomllib.load(f)
m, d = cfg["model"], cfg.get("data", {})
alphabet = d.get("synthetic", {}).get("alphabet", 0) if d.get("train") == "synthetic" else 0
print(m["n_layer"], m["d_model"], m["n_head"], m["vocab_size"], m["seq_len"],
      int(m["tie_embeddings"]), alphabet)
EOF
}
read -r _ D_MODEL N_HEAD VOCAB _ TIED ALPHABET < <(model_of "$CONFIG") ||
  { note "cannot read [model] of $CONFIG"; exit 2; }

# ---- nupipe and PyTorch, per precision --------------------------------------------------
NUPIPE="$BUILD_DIR/bin/nupipe"
if [ ! -x "$NUPIPE" ]; then
  note "ERROR: $NUPIPE not found: the build did not produce it (see above, or build with"
  note "       cmake -S . -B $BUILD_DIR -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD_DIR -j)"
  status=1
fi

# Median tokens/s and GFLOP/s over the steps after the first, and the last step's loss.
nupipe_metrics() {
  "$PYTHON" - "$1" <<'EOF'
import json, statistics, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
except (OSError, ValueError) as e:
    sys.exit(f"cpu_step: cannot read {sys.argv[1]}: {e}")
rows = [r for r in rows if "step" in r]
first = min((r["step"] for r in rows), default=None)
timed = [r for r in rows if r["step"] != first]  # the first step is warm-up
if not timed:
    sys.exit(f"cpu_step: {sys.argv[1]} has no step after the first")
med = lambda k: statistics.median(r[k] for r in timed) if all(k in r for r in timed) else None
tps, gf = med("tokens_per_s"), med("gflops")
if tps is None:
    sys.exit(f"cpu_step: {sys.argv[1]} lacks tokens_per_s")
loss = max(timed, key=lambda r: r["step"]).get("loss")
print(f"{tps:.1f}", "n/a" if gf is None else f"{gf:.1f}", "n/a" if loss is None else f"{loss:.4f}")
EOF
}

untied_flag=""
[ "$TIED" = 0 ] && untied_flag=--untied
: >"$TMP/rows"
: >"$TMP/setup"
# run_nupipe PRECISION FLUSH: sets nupipe_tps, nupipe_gflops, nupipe_loss.
run_nupipe() {
  local p=$1 flush=$2
  nupipe_tps=n/a nupipe_gflops=n/a nupipe_loss=n/a
  RUN="$TMP/run-$p-$flush"
  if [ -x "$NUPIPE" ]; then
    echo "== nupipe $p (flush_denormals=$flush): $NUPIPE train $CONFIG" \
      "(n_layer=$N_LAYER seq=$SEQ batch=$BATCH threads=$THREADS)"
    "$NUPIPE" train "$CONFIG" --set model.n_layer="$N_LAYER" --set model.seq_len="$SEQ" \
      --set train.micro_batch="$BATCH" --set train.global_batch="$BATCH" \
      --set train.steps="$STEPS" --set run.log_every=1 --set run.dir="$RUN" \
      --set runtime.threads="$THREADS" --set runtime.precision="$p" --set checkpoint.every=0 \
      --set runtime.flush_denormals="$flush" 2>&1 | tee "$TMP/nupipe-$p-$flush.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" = 0 ]; then
      # The effective configuration is the truth about what ran.
      if [ -f "$RUN/config.toml" ]; then
        read -r _ D_MODEL N_HEAD VOCAB _ TIED ALPHABET < <(model_of "$RUN/config.toml")
      fi
      read -r nupipe_tps nupipe_gflops nupipe_loss < <(nupipe_metrics "$RUN/metrics.jsonl") ||
        { nupipe_tps=n/a nupipe_gflops=n/a nupipe_loss=n/a status=1; }
    elif [ "$rc" = 2 ] && [ "$p" != fp32 ]; then
      note "nupipe rejected runtime.precision=$p (message above); its $p row reads n/a"
    else
      note "ERROR: nupipe train ($p) failed (exit $rc); output above"
      status=1
    fi
  fi
}

for p in $PRECISIONS; do
  run_nupipe "$p" true
  ftz_tps=$nupipe_tps
  run_nupipe "$p" false

  echo "== PyTorch $p: scripts/bench/torch_step.py (same model, batch and threads)"
  torch_tps=n/a torch_loss=n/a
  if "$PYTHON" scripts/bench/torch_step.py --n-layer "$N_LAYER" --d-model "$D_MODEL" \
      --n-head "$N_HEAD" --vocab "$VOCAB" --seq "$SEQ" --batch "$BATCH" --threads "$THREADS" \
      --steps $((STEPS - 1)) --warmup 1 --precision "$p" --flush-denormal "$FLUSH_DENORMAL" \
      --alphabet "$ALPHABET" $untied_flag 2>&1 | tee "$TMP/torch-$p.log"; then
    torch_tps=$(sed -n 's/^torch_tokens_per_s //p' "$TMP/torch-$p.log")
    torch_loss=$(sed -n 's/^torch_loss //p' "$TMP/torch-$p.log")
    sed -n "s/^torch_step: precision=[^ ]* /PyTorch $p: /p" "$TMP/torch-$p.log" >>"$TMP/setup"
  fi
  [ -n "$torch_tps" ] && [ "$torch_tps" != n/a ] ||
    { torch_tps=n/a torch_loss=n/a; note "ERROR: torch_step.py ($p) failed"; status=1; }
  echo "$p $nupipe_tps $torch_tps $nupipe_loss ${torch_loss:-n/a} $nupipe_gflops $ftz_tps" >>"$TMP/rows"
done

# ---- sgemm ceiling ------------------------------------------------------------------------
SGEMM="$BUILD_DIR/bin/sgemm_peak"
if [ ! -x "$SGEMM" ]; then
  note "$SGEMM not built; compiling scripts/bench/sgemm_peak.cpp directly"
  SGEMM="$TMP/sgemm_peak"
  c++ -std=c++20 -O3 -march=native scripts/bench/sgemm_peak.cpp \
    $(pkg-config --cflags --libs openblas) -o "$SGEMM" 2>&1 >&2 || SGEMM=""
fi
sgemm=n/a
echo "== sgemm ceiling: $SGEMM --threads $THREADS --tokens $((BATCH * SEQ)) --d-model $D_MODEL"
if [ -n "$SGEMM" ] && "$SGEMM" --threads "$THREADS" --tokens $((BATCH * SEQ)) \
    --d-model "$D_MODEL" | tee "$TMP/sgemm.log"; then
  sgemm=$(sed -n 's/^sgemm_peak_gflops //p' "$TMP/sgemm.log")
fi
[ -n "$sgemm" ] && [ "$sgemm" != n/a ] || { sgemm=n/a; note "ERROR: sgemm_peak failed"; status=1; }

# ---- table --------------------------------------------------------------------------------
"$PYTHON" - "$TMP/rows" "$TMP/setup" "$sgemm" <<EOF
import sys
def num(s):
    try:
        return float(s)
    except ValueError:
        return None
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
peak = num(sys.argv[3])
ratio = lambda a, b: f"{a / b:.3f}" if a is not None and b else "n/a"
fmt = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"
print()
print("cpu_step: n_layer=$N_LAYER d_model=$D_MODEL n_head=$N_HEAD vocab=$VOCAB seq=$SEQ "
      "batch=$BATCH tied=$TIED threads=$THREADS; median over steps after the first; "
      "loss at step $STEPS; build=${build_type:-?}")
for line in open(sys.argv[2]):
    print("cpu_step:", line.strip())
cols = ("precision", "nupipe tok/s", "PyTorch tok/s", "nupipe/PyTorch", "nupipe FTZ tok/s",
        "FTZ/PyTorch", "nupipe loss", "PyTorch loss", "nupipe GFLOP/s")
print("".join(f"{c:>17}" for c in cols))
fp32_gf = None
for p, tps, ttps, loss, tloss, gf, ftz in rows:
    tps, ttps, loss, tloss, gf, ftz = map(num, (tps, ttps, loss, tloss, gf, ftz))
    fp32_gf = gf if p == "fp32" else fp32_gf
    cells = (p, fmt(tps), fmt(ttps), ratio(tps, ttps), fmt(ftz), ratio(ftz, ttps), fmt(loss, 4),
             fmt(tloss, 4), fmt(gf))
    print("".join(f"{c:>17}" for c in cells))
print(f"{'sgemm ceiling GFLOP/s (fp32)':<36}{fmt(peak):>12}")
print(f"{'fp32 fraction of ceiling':<36}{ratio(fp32_gf, peak):>12}")
EOF
exit $status
