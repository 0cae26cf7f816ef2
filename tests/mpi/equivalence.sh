#!/bin/sh
# equivalence.sh: the same model, seed, data and global batch trained for 5 steps on several
# pipeline x data layouts and every schedule; losses and final weights must match the
# single-rank run (compare_runs.py). PRECISION (fp32 or bf16, default fp32) sets
# runtime.precision; COMPARE_FLAGS are passed to compare_runs.py (its tolerances).
#   [PRECISION=bf16] [COMPARE_FLAGS=...] equivalence.sh TRAIN_AND_DUMP CONFIG WORK_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -eu
bin=$1 config=$2 work=$3
shift 3
here=$(dirname "$0")
rm -rf "$work"
mkdir -p "$work"
common="--set train.steps=5 --set train.global_batch=16 --set train.micro_batch=2 \
  --set train.val_every=0 --set data.val= --set runtime.threads=1 --set model.n_layer=4 \
  --set optim.warmup_steps=2 --set runtime.precision=${PRECISION:-fp32}"

run() {  # name ranks pipeline data stage_layers schedule [--set KEY=VALUE ...]
  name=$1 np=$2 pp=$3 dp=$4 layers=$5 schedule=$6
  shift 6
  echo "== $name: $np rank(s), pipeline $pp x data $dp, stage_layers $layers, $schedule $*"
  # shellcheck disable=SC2086
  "$MPI" $MPIFLAGS -np "$np" "$bin" --config "$config" --out "$work/$name" $common \
    --set parallel.pipeline="$pp" --set parallel.data="$dp" --set parallel.stage_layers="$layers" \
    --set parallel.schedule="$schedule" "$@"
}
MPI=$1
shift
MPIFLAGS="$*"
run single            1 1 1 '"uniform"' 1f1b
run pp2_1-3           2 2 1 '[1,3]'     1f1b
run pp2_3-1_dp2       4 2 2 '[3,1]'     1f1b
run pp4               4 4 1 '[1,1,1,1]' 1f1b
run dp4               4 1 4 '"uniform"' 1f1b
run pp2_1-3_gpipe     2 2 1 '[1,3]'     gpipe
run pp4_gpipe         4 4 1 '[1,1,1,1]' gpipe
# The zero-bubble schedules (backward split into B and W): against one rank like the others,
# and bitwise against 1F1B on the same layout (the same sums in the same order: B then W is
# the fused backward bit for bit, and each parameter's W run in microbatch order). With
# recompute and a chunked loss, both sides alike.
rc="--set train.recompute=[1,2] --set train.loss_chunk=96"
run pp2_3-1_dp2_zbh1  4 2 2 '[3,1]'     zb-h1
run pp4_zbh2          4 4 1 '[1,1,1,1]' zb-h2
run pp2_1-3_rc        2 2 1 '[1,3]'     1f1b  $rc
run pp2_1-3_rc_zbh1   2 2 1 '[1,3]'     zb-h1 $rc
# The llama family (configs/llama-tiny.toml beside CONFIG: RMSNorm, rotary, SwiGLU, 2 query
# heads per key/value head, untied): uneven pipeline x data, and zero-bubble with ZeRO-1 and a
# chunked loss, against its own single rank.
llama="$(dirname "$config")/llama-tiny.toml"
runl() {  # as run, on the llama config
  saved=$config config=$llama
  run "$@"
  config=$saved
}
runl llama_single        1 1 1 '"uniform"' 1f1b
runl llama_pp2_1-3_dp2   4 2 2 '[1,3]'     1f1b
runl llama_pp2_3-1_dp2_z 4 2 2 '[3,1]'     zb-h1 --set parallel.zero=1 --set train.loss_chunk=96
# Yuan 2.0's localized filtering (model.lfa, multi-head) on the same config.
yuan="--set model.lfa=true --set model.n_kv_head=0"
# shellcheck disable=SC2086
runl yuan_single         1 1 1 '"uniform"' 1f1b  $yuan
# shellcheck disable=SC2086
runl yuan_pp2_1-3_dp2_z  4 2 2 '[1,3]'     zb-h2 $yuan --set parallel.zero=1 --set train.recompute=[1,0]
status=0
/usr/bin/python3 "$here/compare_runs.py" --loss-rtol 0 --weight-rtol 0 --key-bias-atol 0 \
  "$work/pp2_3-1_dp2" "$work/pp2_3-1_dp2_zbh1" || status=1
/usr/bin/python3 "$here/compare_runs.py" --loss-rtol 0 --weight-rtol 0 --key-bias-atol 0 \
  "$work/pp4" "$work/pp4_zbh2" || status=1
/usr/bin/python3 "$here/compare_runs.py" --loss-rtol 0 --weight-rtol 0 --key-bias-atol 0 \
  "$work/pp2_1-3_rc" "$work/pp2_1-3_rc_zbh1" || status=1
# shellcheck disable=SC2086
/usr/bin/python3 "$here/compare_runs.py" ${COMPARE_FLAGS:-} "$work/single" "$work/pp2_1-3" \
  "$work/pp2_3-1_dp2" "$work/pp4" "$work/dp4" "$work/pp2_1-3_gpipe" "$work/pp4_gpipe" \
  "$work/pp2_3-1_dp2_zbh1" "$work/pp4_zbh2" "$work/pp2_1-3_rc_zbh1" || status=1
# shellcheck disable=SC2086
/usr/bin/python3 "$here/compare_runs.py" ${COMPARE_FLAGS:-} "$work/llama_single" \
  "$work/llama_pp2_1-3_dp2" "$work/llama_pp2_3-1_dp2_z" || status=1
# shellcheck disable=SC2086
/usr/bin/python3 "$here/compare_runs.py" ${COMPARE_FLAGS:-} "$work/yuan_single" \
  "$work/yuan_pp2_1-3_dp2_z" || status=1
exit $status
