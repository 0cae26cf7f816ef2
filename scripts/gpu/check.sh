#!/usr/bin/env bash
# check.sh: step 2 of 2, on the GPU machine, in one call: the CUDA op tests against the cpu
# backend, the CUDA backend's own tests, compute-sanitizer on them, single-GPU training (tiny,
# fp32 and bf16) against the cpu backend's losses, multi-rank runs (sharing the GPU
# over host-staged MPI; over NCCL with a GPU per rank) against one GPU rank,
# and the benchmark against PyTorch (scripts/gpu/bench.sh); then one final table. Uses the
# binaries and libraries scripts/gpu/bundle.sh gathered into .gpu-bundle/ on the build machine.
#
#   bash scripts/gpu/check.sh                 # with the device tool: carry [".gpu-bundle.tar.xz"]
# Environment: BUNDLE (.gpu-bundle), SKIP_BENCH=1, SANITIZE=0 to skip compute-sanitizer.
# Exit: 0 every step passed; 1 a step failed (the table says which); 2 no bundle or no GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu-bundle}
[ -x "$BUNDLE/bin/nupipe" ] || [ ! -f "$BUNDLE.tar.xz" ] || tar -xJf "$BUNDLE.tar.xz"
[ -x "$BUNDLE/bin/nupipe" ] || { echo "check: no $BUNDLE/bin/nupipe: run scripts/gpu/bundle.sh on the build machine first" >&2; exit 2; }
nvidia-smi -L || { echo "check: no GPU here (nvidia-smi failed)" >&2; exit 2; }

# CUDA's libraries from this machine's toolkit, NCCL from its Python wheel if not there.
cuda_lib=/usr/local/cuda/lib64
nccl_lib=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib:$cuda_lib:${nccl_lib:+$nccl_lib:}${LD_LIBRARY_PATH:-}"
export OPAL_PREFIX="$PWD/$BUNDLE/ompi" PATH="$PWD/$BUNDLE/ompi/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=
B="$PWD/$BUNDLE/bin"
OUT=${OUT:-/tmp/nupipe-gpu-check}
mkdir -p "$OUT"
: >"$OUT/table"
row() { printf '%-44s %-6s %s\n' "$1" "$2" "$3" | tee -a "$OUT/table"; }
status=0
step() {  # name, command...
  local name=$1; shift
  echo "== $name: $*"
  if "$@" >"$OUT/$name.log" 2>&1; then row "$name" ok "$(tail -1 "$OUT/$name.log")"
  else row "$name" FAIL "see $OUT/$name.log: $(tail -1 "$OUT/$name.log")"; status=1; fi
}

"$B/nupipe" --version | tee "$OUT/version"
step op_tests "$B/unit_tests" --gtest_filter='BackendOps*:FusedAttention*:CudaBackend*' --gtest_brief=1
grep -q SKIPPED "$OUT/op_tests.log" && { row op_tests_skips FAIL "tests skipped on a GPU machine"; status=1; }
if [ "${SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  step sanitizer compute-sanitizer --error-exitcode 1 "$B/unit_tests" --gtest_filter='BackendOps*:FusedAttention*:CudaBackend*' --gtest_brief=1
fi

# Whole-model training on the GPU against the cpu backend: the same losses within bf16/fp32
# tolerances (compare_losses below).
train() {  # name device precision extra...
  local name=$1 dev=$2 prec=$3; shift 3
  "$B/nupipe" train configs/tiny.toml --set runtime.device="$dev" --set runtime.precision="$prec" \
    --set parallel.pipeline=1 --set parallel.data=1 --set parallel.stage_layers=uniform \
    --set train.steps=20 --set checkpoint.every=0 --set run.log_every=1 \
    --set run.dir="$OUT/run_$name" --set checkpoint.resume=never "$@"
}
compare_losses() {  # a b rtol
  python3 - "$OUT/run_$1/metrics.jsonl" "$OUT/run_$2/metrics.jsonl" "$3" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print("worst loss rel diff %.2e over %d steps (bound %s)" % (worst, len(a), sys.argv[3]))
sys.exit(0 if len(a) == len(b) and worst <= float(sys.argv[3]) else 1)
PY
}
for prec in fp32 bf16; do
  rm -rf "$OUT/run_cpu_$prec" "$OUT/run_cuda_$prec"
  step "train_cpu_$prec" train "cpu_$prec" cpu "$prec"
  step "train_cuda_$prec" train "cuda_$prec" cuda "$prec"
  step "losses_cuda_vs_cpu_$prec" compare_losses "cuda_$prec" "cpu_$prec" "$([ "$prec" = fp32 ] && echo 1e-4 || echo 2e-2)"
done
# Several ranks on the GPU(s) against one GPU rank (the ctest gpu_equivalence, here from the
# bundle): sharing the GPU over host-staged MPI, over NCCL with a GPU per rank.
step gpu_equivalence bash tests/mpi/gpu_equivalence.sh "$B/nupipe" configs/tiny.toml \
  "$OUT/equivalence" mpirun --oversubscribe
# compute-sanitizer over whole training steps (every kernel the model launches, the loss, AdamW).
if [ "${SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  step sanitizer_train compute-sanitizer --error-exitcode 1 "$B/nupipe" train configs/tiny.toml \
    --set runtime.device=cuda --set runtime.precision=bf16 --set parallel.pipeline=1 \
    --set parallel.data=1 --set parallel.stage_layers=uniform --set train.steps=2 \
    --set checkpoint.every=0 --set run.dir="$OUT/run_sanitizer" --set checkpoint.resume=never
fi
[ "${SKIP_BENCH:-0}" = 1 ] || step bench bash scripts/gpu/bench.sh

echo
echo "== nupipe GPU check: $(head -1 "$OUT/version")"
cat "$OUT/table"
exit $status
