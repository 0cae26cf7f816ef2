#!/bin/sh
# equivalence.sh: the same model, seed, data and global batch trained for 5 steps on several
# pipeline x data layouts and both schedules; losses and final weights must match the
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

run() {  # name ranks pipeline data stage_layers schedule
  name=$1 np=$2
  echo "== $name: $np rank(s), pipeline $3 x data $4, stage_layers $5, $6"
  # shellcheck disable=SC2086
  "$MPI" $MPIFLAGS -np "$np" "$bin" --config "$config" --out "$work/$name" $common \
    --set parallel.pipeline="$3" --set parallel.data="$4" --set parallel.stage_layers="$5" \
    --set parallel.schedule="$6"
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
# shellcheck disable=SC2086
exec /usr/bin/python3 "$here/compare_runs.py" ${COMPARE_FLAGS:-} "$work/single" "$work/pp2_1-3" \
  "$work/pp2_3-1_dp2" "$work/pp4" "$work/dp4" "$work/pp2_1-3_gpipe" "$work/pp4_gpipe"
