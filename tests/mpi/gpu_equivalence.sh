#!/usr/bin/env bash
# gpu_equivalence.sh: multi-rank training on the GPU(s) against one GPU rank, same config.
# Untied pipeline layouts add every gradient in the single rank's order, so their losses agree
# to fp32 noise at most (bitwise on the cpu backend): bound 1e-6 relative; tied ZeRO-1 data
# parallelism sums in another order: 1e-4, as on the cpu backend. Ranks sharing one GPU go over
# MPI staged through host memory (runtime.comm = "auto", checked in the log); with two or more
# GPUs, one rank per GPU goes over NCCL; with one, runtime.comm = "nccl" must be refused (exit 2).
# Also pipeline 2 with the fused attention kernels against one rank with them.
#   gpu_equivalence.sh NUPIPE CONFIG WORK_DIR MPIRUN [MPIRUN_FLAGS...]
# Exit: 0 all agree; 1 a run failed or disagreed; 77 (ctest: skipped) without a GPU.
set -uo pipefail
nupipe=$1 config=$2 work=$3
shift 3
mpi=("$@")
if ! "$nupipe" --version | grep -q 'cuda'; then
  echo "SKIP: this build has no CUDA backend"; exit 77
fi
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -lt 1 ]; then
  echo "SKIP: no GPU here (nvidia-smi lists none)"; exit 77
fi
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
run() {  # name ranks tied extra...
  local name=$1 np=$2 tied=$3; shift 3
  rm -rf "$work/$name"
  "${mpi[@]}" -np "$np" "$nupipe" train "$config" --set runtime.device=cuda \
    --set model.tie_embeddings="$tied" --set train.steps=20 --set checkpoint.every=0 \
    --set run.log_every=1 --set run.dir="$work/$name" --set checkpoint.resume=never \
    --set parallel.schedule=1f1b "$@" >"$work/$name.log" 2>&1
}
compare() {  # name reference rtol
  python3 - "$work/$1/metrics.jsonl" "$work/$2/metrics.jsonl" "$3" "$1" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b)) if a and len(a) == len(b) else float("inf")
ok = worst <= float(sys.argv[3])
print("%-16s worst loss rel diff %.2e over %d steps (bound %s) %s" %
      (sys.argv[4], worst, len(a), sys.argv[3], "ok" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
}
check() {  # name ranks tied reference rtol extra...
  local name=$1 np=$2 tied=$3 ref=$4 rtol=$5; shift 5
  if run "$name" "$np" "$tied" "$@"; then compare "$name" "$ref" "$rtol" || status=1
  else echo "$name FAIL: exit $? (see $work/$name.log)"; status=1; fi
}
one=(--set parallel.pipeline=1 --set parallel.data=1 --set parallel.stage_layers=uniform)
run single_untied 1 false "${one[@]}" || { echo "single rank failed: $work/single_untied.log"; exit 1; }
run single_tied 1 true "${one[@]}" || { echo "single rank failed: $work/single_tied.log"; exit 1; }
pp2=(--set parallel.pipeline=2 --set parallel.data=1 --set parallel.stage_layers=[1,3])
check shared_pp2 2 false single_untied 1e-6 "${pp2[@]}"
grep -q 'collectives: mpi (host-staged)' "$work/shared_pp2.log" ||
  { echo "shared_pp2 FAIL: not host-staged MPI"; status=1; }
check shared_pp2_dp2 4 true single_tied 1e-4 --set parallel.pipeline=2 --set parallel.data=2 \
  --set parallel.stage_layers=[1,3] --set parallel.zero=1
# The fused attention kernels (runtime.attention = "auto" is unfused on cuda), the same way.
run single_fused 1 false "${one[@]}" --set runtime.attention=fused ||
  { echo "single_fused FAIL: $work/single_fused.log"; status=1; }
check fused_pp2 2 false single_fused 1e-6 "${pp2[@]}" --set runtime.attention=fused
if [ "$gpus" -lt 2 ]; then
  run nccl_refused 2 false "${pp2[@]}" --set runtime.comm=nccl
  rc=$?
  if [ "$rc" = 2 ]; then echo "nccl_refused     exit 2 on a shared GPU ok"
  else echo "nccl_refused     FAIL: exit $rc, expected 2"; status=1; fi
  echo "nccl             skipped: one GPU here, NCCL needs a GPU per rank"
else
  check nccl_pp2 2 false single_untied 1e-6 "${pp2[@]}" --set runtime.comm=nccl
  check nccl_dp2 2 true single_tied 1e-4 --set parallel.pipeline=1 --set parallel.data=2 \
    --set parallel.stage_layers=uniform --set parallel.zero=1 --set runtime.comm=nccl
fi
exit $status
