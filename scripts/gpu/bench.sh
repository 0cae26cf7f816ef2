#!/usr/bin/env bash
# bench.sh: GPT-2 124M (12 layers, d_model 768, seq 1024, tied) training steps on one GPU,
# nupipe against PyTorch on the same GPU, model and batch, side by side: tokens/s and MFU, with
# MFU = (6 N + 12 L C T) FLOPs per token (N parameters, L layers, C width, T sequence; the
# attention term as in the PaLM paper) over the detected GPU's dense bf16 peak. PyTorch runs as
# its users run it at its best: a nanoGPT-style model (scripts/bench/torch_step.py) with
# torch.compile, scaled_dot_product_attention, the fastest (fused) AdamW and bf16 autocast.
# Then nupipe on pipeline 2 with both stages on the one GPU; single-GPU runs with the fused
# attention (runtime.attention = "auto" is unfused on cuda) and without the GEMM epilogues
# (where the fusions pay); and, where Nsight Systems is
# installed, the kernels' shares of GPU time (where the time goes).
# Run by scripts/gpu/check.sh (which sets up the bundle's libraries), or alone the same way.
# Environment: BATCH (8 sequences per step), STEPS (10; the first 2 are warm-up), PRECISION
# (bf16), BUNDLE (.gpu-bundle), PEAK_TFLOPS (detected from the GPU's name; else required).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu-bundle}
B="$PWD/$BUNDLE/bin"
BATCH=${BATCH:-8}
STEPS=${STEPS:-10}
PRECISION=${PRECISION:-bf16}
OUT=${OUT:-/tmp/nupipe-gpu-check}/bench
mkdir -p "$OUT"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$gpu" in
  *H100*|*H200*) peak=${PEAK_TFLOPS:-989} ;;  # dense bf16, SXM
  *A100*) peak=${PEAK_TFLOPS:-312} ;;
  *) peak=${PEAK_TFLOPS:?unknown GPU "$gpu": set PEAK_TFLOPS (dense bf16)} ;;
esac
# 6N + 12 L C T per token for GPT-2 124M (N = 124.4M with the tied head counted once).
flops=$(python3 -c "N=124439808; L=12; C=768; T=1024; print(6*N + 12*L*C*T)")

nupipe_run() {  # name ranks pipeline [--set ...]
  rm -rf "$OUT/$1"
  mpirun --oversubscribe -np "$2" "$B/nupipe" train configs/gpt2-124m.toml \
    --set runtime.device=cuda --set runtime.precision="$PRECISION" \
    --set parallel.pipeline="$3" --set parallel.stage_layers=uniform \
    --set train.micro_batch=$((BATCH / $3 > 0 ? BATCH / $3 : 1)) --set train.global_batch="$BATCH" \
    --set train.steps="$STEPS" --set checkpoint.every=0 --set run.log_every=1 \
    --set run.dir="$OUT/$1" "${@:4}" >"$OUT/$1.log" 2>&1 || { echo "n/a"; return; }
  python3 - "$OUT/$1/metrics.jsonl" <<'PY'
import json, statistics, sys
r = [json.loads(l) for l in open(sys.argv[1])][2:]
print("%.0f" % statistics.median(x["tokens_per_s"] for x in r))
PY
}
nupipe_tps=$(nupipe_run single 1 1)
nupipe_pp2=$(nupipe_run pp2 2 2)
# Where the fusions pay: the same single-GPU run without each.
nupipe_fused=$(nupipe_run fused_attention 1 1 --set runtime.attention=fused)
nupipe_noepi=$(nupipe_run no_epilogues 1 1 --set runtime.gemm_epilogues=false)
# Where the time goes: per-kernel totals over a few steps, when Nsight Systems is there.
if command -v nsys >/dev/null; then
  rm -rf "$OUT/nsys_run"
  nsys profile --stats=false -o "$OUT/nupipe" --force-overwrite true "$B/nupipe" train \
    configs/gpt2-124m.toml --set runtime.device=cuda --set runtime.precision="$PRECISION" \
    --set parallel.pipeline=1 --set parallel.stage_layers=uniform --set train.micro_batch="$BATCH" \
    --set train.global_batch="$BATCH" --set train.steps=4 --set checkpoint.every=0 \
    --set run.dir="$OUT/nsys_run" >"$OUT/nsys.log" 2>&1 &&
    nsys stats --report cuda_gpu_kern_sum --format csv "$OUT/nupipe.nsys-rep" \
      >"$OUT/kernels.csv" 2>>"$OUT/nsys.log" &&
    python3 - "$OUT/kernels.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r]
head = next(i for i, r in enumerate(rows) if r and r[0].startswith("Time"))
print("top kernels (share of GPU time, name):")
for r in rows[head + 1:head + 16]:
    print("  %6s%%  %s" % (r[0], r[-1][:90]))
PY
fi
python3 scripts/bench/torch_step.py --device cuda --compile 1 --precision "$PRECISION" \
  --n-layer 12 --d-model 768 --n-head 12 --vocab 50257 --seq 1024 --batch "$BATCH" \
  --steps $((STEPS - 2)) --warmup 2 >"$OUT/torch.log" 2>&1
torch_tps=$(sed -n 's/^torch_tokens_per_s //p' "$OUT/torch.log")
python3 - "$gpu" "$peak" "$flops" "${nupipe_tps:-n/a}" "${nupipe_pp2:-n/a}" "${torch_tps:-n/a}" \
  "${nupipe_fused:-n/a}" "${nupipe_noepi:-n/a}" <<'PY'
import sys
gpu, peak, flops = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
num = lambda s: float(s) if s not in ("n/a", "") else None
nup, pp2, tor, fused, noepi = map(num, sys.argv[4:9])
mfu = lambda t: "n/a" if t is None else "%.1f%%" % (100 * t * flops / (peak * 1e12))
print("GPT-2 124M, seq 1024, %s, peak %.0f TFLOP/s bf16 dense" % (gpu, peak))
for name, t in (("nupipe", nup), ("nupipe pipeline 2 (one GPU)", pp2),
                ("nupipe, fused attention", fused), ("nupipe, no GEMM epilogues", noepi),
                ("PyTorch (compile, SDPA, fused AdamW)", tor)):
    print("%-40s %12s tok/s  MFU %s" % (name, "n/a" if t is None else "%.0f" % t, mfu(t)))
print("nupipe / PyTorch: %s" % ("n/a" if not (nup and tor) else "%.2f" % (nup / tor)))
PY
