#!/usr/bin/env bash
# cpu_step.sh: nupipe bf16, nupipe fp32 and PyTorch bf16 / fp32 training-step throughput on this
# CPU, side by side in one run (same model, batch and threads), interleaved over rounds, with
# the GEMM ceiling of this CPU measured in the same run (gemm_peak: the cpu backend's own bf16
# and fp32 products) and each end-to-end GFLOP/s against it.
#
#   scripts/bench/cpu_step.sh                          # the shapes and threads below, 2 rounds
#   SHAPES="small:2:256:4" THREADS_LIST=2 ROUNDS=3 scripts/bench/cpu_step.sh
#
# SHAPES: name:n_layer:seq:batch[:config] entries (default: "small:2:256:4" GPT-2 width with 2
# layers, 4 x 256 tokens; "124m-256:12:256:1" and "124m-1024:12:1024:1", GPT-2 124M at seq 256
# and 1024, one sequence per step; "llama-small:2:256:4:configs/llama-124m.toml", a Llama-shaped
# row: width 768, 12 query heads on 4 key/value heads, SwiGLU 2048, 32000-token untied head).
# An entry's config (default CONFIG) gives the model's family and widths to both sides. THREADS_LIST ("1 2"). ROUNDS (2): each round runs the four
# (nupipe bf16, nupipe fp32, PyTorch bf16, PyTorch fp32) in an order rotated per round, so slow
# phases of a shared machine fall on all of them; each cell is the median over the rounds of a
# run's median step (steps after the first), with the spread (min-max over rounds) beside it.
# STEPS (3; the first is warm-up). CONFIG (configs/gpt2-124m.toml: family, d_model, n_head,
# vocab, tie_embeddings, the llama keys and the synthetic alphabet PyTorch draws its tokens from). BUILD_DIR (build),
# SKIP_BUILD=1, KEEP_TMP=1, PYTHON, FLUSH_DENORMALS (nupipe's runtime.flush_denormals, false),
# TORCH_ADAMW (auto: torch_step.py times each AdamW of this torch first and keeps the fastest;
# naming one, e.g. for-loop, skips that timing). RUNS (all four: "nupipe-bf16 nupipe-fp32
# torch-bf16 torch-fp32"): which of them to time, e.g. without torch-bf16 on a CPU without bf16
# instructions, where this torch's autocast runs minutes per step; the others read n/a.
#
# The PyTorch peer (torch_step.py) is nanoGPT-style GPT-2 (or, for a llama config, a Llama with
# fused q/k/v and gate/up projections, torch_step_llama.py) at its fastest here: bf16 autocast
# (fp32 master weights) or fp32, denormals flushed, SDPA attention where this torch has it, the
# fastest AdamW of this torch. GFLOP/s are the model's FLOPs per token (nupipe's cost descriptors, the same for both)
# times tokens/s. Absolute numbers on shared machines are noise; the ratios are the result.
# Exit: 0 all measured; 1 some part could not be measured (it reads n/a).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
CONFIG=${CONFIG:-configs/gpt2-124m.toml}
SHAPES=${SHAPES:-small:2:256:4 124m-256:12:256:1 124m-1024:12:1024:1 llama-small:2:256:4:configs/llama-124m.toml}
THREADS_LIST=${THREADS_LIST:-1 2}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
FLUSH_DENORMALS=${FLUSH_DENORMALS:-false}
BUILD_DIR=${BUILD_DIR:-build}
TORCH_ADAMW=${TORCH_ADAMW:-auto}
RUNS=${RUNS:-nupipe-bf16 nupipe-fp32 torch-bf16 torch-fp32}
for r in $RUNS; do
  case $r in
    nupipe-bf16 | nupipe-fp32 | torch-bf16 | torch-fp32) ;;
    *) echo "cpu_step: RUNS has '$r'; each entry is nupipe-bf16, nupipe-fp32, torch-bf16 or torch-fp32" >&2
       exit 2 ;;
  esac
done

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
for spec in $SHAPES; do
  IFS=: read -r _ _ _ _ cfg <<<"$spec"
  if [ ! -f "${cfg:-$CONFIG}" ]; then
    note "config ${cfg:-$CONFIG} (of SHAPES entry $spec) not found"
    exit 2
  fi
done

# ---- build --------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$TMP/configure.log" 2>&1 ||
      { tail -n 30 "$TMP/configure.log" >&2; note "cmake configure failed (log above)"; }
  fi
  for target in nupipe gemm_peak; do
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
NUPIPE="$BUILD_DIR/bin/nupipe"
PEAK="$BUILD_DIR/bin/gemm_peak"
for exe in "$NUPIPE" "$PEAK"; do
  [ -x "$exe" ] || { note "ERROR: $exe not found (build it: cmake --build $BUILD_DIR --target $(basename "$exe"))"; exit 1; }
done

# The width and torch_step.py's model arguments, from [model] of a TOML file and its synthetic
# data's alphabet (0: not synthetic), on one line.
torch_model_args() {
  "$PYTHON" - "$1" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    cfg = tomllib.load(f)
m, d = cfg["model"], cfg.get("data", {})
alphabet = d.get("synthetic", {}).get("alphabet", 0) if d.get("train") == "synthetic" else 0
a = [f"--d-model {m['d_model']}", f"--n-head {m['n_head']}", f"--vocab {m['vocab_size']}",
     f"--alphabet {alphabet}"]
if not m.get("tie_embeddings", True):
    a.append("--untied")
if m.get("family", "gpt2") == "llama":
    if m.get("lfa", False):
        sys.exit("cpu_step: model.lfa has no PyTorch peer here")
    ffn = m.get("ffn_hidden", 0) or (8 * m["d_model"] // 3 + 255) // 256 * 256
    a += ["--family llama", f"--n-kv-head {m.get('n_kv_head', 0)}", f"--ffn-hidden {ffn}",
          f"--rope-theta {m.get('rope_theta', 10000.0)}", f"--norm-eps {m.get('norm_eps', 1e-5)}"]
print(m["d_model"], " ".join(a))
EOF
}

# Median tokens/s and GFLOP/s over a run's steps after the first.
nupipe_metrics() {
  "$PYTHON" - "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
rows = [r for r in rows if "step" in r]
first = min(r["step"] for r in rows)
timed = [r for r in rows if r["step"] != first]
tps = statistics.median(r["tokens_per_s"] for r in timed)
gf = statistics.median(r["gflops"] for r in timed)
print(f"{tps:.2f} {gf / tps * 1e9:.0f}")  # tokens/s, FLOPs per token
EOF
}

# run KIND PRECISION: appends "shape threads kind precision tokens/s flops/token" to rows.
run() {
  local kind=$1 p=$2 log="$TMP/$shape-$threads-$1-$2-r$round.log" tps="" fpt=""
  if [ "$kind" = nupipe ]; then
    local dir="$TMP/run-$shape-$threads-$p-r$round"
    "$NUPIPE" train "$cfg" --set model.n_layer="$layers" --set model.seq_len="$seq" \
      --set train.micro_batch="$batch" --set train.global_batch="$batch" \
      --set parallel.pipeline=1 --set parallel.data=1 --set parallel.stage_layers=uniform \
      --set train.steps="$STEPS" --set run.log_every=1 --set run.dir="$dir" \
      --set runtime.threads="$threads" --set runtime.precision="$p" --set checkpoint.every=0 \
      --set runtime.flush_denormals="$FLUSH_DENORMALS" >"$log" 2>&1 &&
      read -r tps fpt < <(nupipe_metrics "$dir/metrics.jsonl")
    rm -rf "$dir"
  else
    # shellcheck disable=SC2086
    "$PYTHON" scripts/bench/torch_step.py --n-layer "$layers" $model_args --seq "$seq" \
      --batch "$batch" --threads "$threads" --steps $((STEPS - 1)) --warmup 1 --precision "$p" \
      --flush-denormal 1 --adamw "$TORCH_ADAMW" >"$log" 2>&1 &&
      tps=$(sed -n 's/^torch_tokens_per_s //p' "$log")
    [ "$round" = 1 ] && [ "$threads" = "${THREADS_LIST%% *}" ] &&
      sed -n "s/^torch_step: /  PyTorch $p ($shape): /p" "$log" | head -2 >>"$TMP/setup"
  fi
  if [ -z "$tps" ]; then
    note "ERROR: $kind $p ($shape, $threads threads) failed; the end of its log:"
    tail -n 8 "$log" >&2
    tps=nan status=1
  fi
  echo "$kind $p ${tps} ${fpt:-0}" >>"$TMP/rows-$shape-$threads"
  echo "cpu_step: $shape threads=$threads round $round: $kind $p $tps tokens/s"
}

: >"$TMP/setup"
for spec in $SHAPES; do
  IFS=: read -r shape layers seq batch cfg <<<"$spec"
  cfg=${cfg:-$CONFIG}
  read -r D_MODEL model_args < <(torch_model_args "$cfg") ||
    { note "cannot read [model] of $cfg"; exit 2; }
  for threads in $THREADS_LIST; do
    : >"$TMP/rows-$shape-$threads"
    "$PEAK" --threads "$threads" --tokens $((seq * batch)) --d-model "$D_MODEL" --seconds 0.2 \
      >"$TMP/peak-$shape-$threads.log" 2>&1 || { note "ERROR: gemm_peak failed"; status=1; }
    [ "$shape" = "${SHAPES%%:*}" ] && [ "$threads" = "${THREADS_LIST%% *}" ] &&
      sed -n 's/^gemm_peak: [0-9]* threads; /  nupipe gemm: /p' "$TMP/peak-$shape-$threads.log" >>"$TMP/setup"
    runs=()
    for r in $RUNS; do runs+=("${r/-/ }"); done
    for ((round = 1; round <= ROUNDS; ++round)); do
      for ((i = 0; i < ${#runs[@]}; ++i)); do
        # shellcheck disable=SC2086
        run ${runs[$(((i + round - 1) % ${#runs[@]}))]}
      done
    done
  done
done

# ---- table --------------------------------------------------------------------------------
"$PYTHON" - "$TMP" "$SHAPES" "$THREADS_LIST" "$ROUNDS" "$STEPS" "${build_type:-?}" <<'EOF'
import math, os, statistics, sys
tmp, shapes, threads_list, rounds, steps, build = sys.argv[1:7]
print()
print(f"cpu_step: {rounds} round(s) of each; a cell is the median over rounds of each run's "
      f"median step after the first of {steps}, spread min-max over rounds; build={build}")
for line in open(os.path.join(tmp, "setup")):
    print("cpu_step:" + line.rstrip())
cols = ("shape", "thr", "nupipe bf16", "nupipe fp32", "torch bf16", "torch fp32", "bf16/fp32",
        "bf16/torch", "fp32/torch", "bf16 GF/s", "bf16 peak", "of peak", "fp32 GF/s",
        "fp32 peak", "of peak")
widths = (11, 3, 23, 23, 23, 23, 9, 10, 10, 9, 9, 7, 9, 9, 7)
print(" ".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
for spec in shapes.split():
    shape = spec.split(":")[0]
    for thr in threads_list.split():
        runs = {}
        fpt = 0.0
        for line in open(os.path.join(tmp, f"rows-{shape}-{thr}")):
            kind, p, tps, f = line.split()
            runs.setdefault((kind, p), []).append(float(tps))
            fpt = max(fpt, float(f))
        peak = {}
        for line in open(os.path.join(tmp, f"peak-{shape}-{thr}.log")):
            if line.startswith("gemm_peak_gflops_"):
                k, v = line.split()
                peak[k.rsplit("_", 1)[1]] = float(v)
        def med(k):
            v = [x for x in runs.get(k, []) if not math.isnan(x)]
            return statistics.median(v) if v else None
        def cell(k):
            v = [x for x in runs.get(k, []) if not math.isnan(x)]
            if not v:
                return "n/a"
            return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
        r = lambda a, b: f"{a / b:.2f}" if a and b else "n/a"
        nb, nf, tb, tf = (med(k) for k in (("nupipe", "bf16"), ("nupipe", "fp32"),
                                           ("torch", "bf16"), ("torch", "fp32")))
        gb = nb * fpt / 1e9 if nb and fpt else None
        gf = nf * fpt / 1e9 if nf and fpt else None
        f1 = lambda v: "n/a" if v is None else f"{v:.1f}"
        cells = (shape, thr, cell(("nupipe", "bf16")), cell(("nupipe", "fp32")),
                 cell(("torch", "bf16")), cell(("torch", "fp32")), r(nb, nf), r(nb, tb),
                 r(nf, tf), f1(gb), f1(peak.get("bf16")), r(gb, peak.get("bf16")), f1(gf),
                 f1(peak.get("fp32")), r(gf, peak.get("fp32")))
        print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
print("cpu_step: tokens/s; bf16/fp32 = nupipe bf16 over nupipe fp32, x/torch = nupipe over "
      "PyTorch at the same precision; peak = gemm_peak's best product at the run's tokens")
EOF
exit $status
