#!/bin/sh
# zero_equivalence.sh: parallel.zero = 1 (ZeRO-1) against parallel.zero = 0 on the same layout,
# model, seed, data and global batch for 10 steps: per-step losses within 1e-6 relative and
# final weights (compare_runs.py), and per rank the padding, the optimizer bytes (1/dp plus
# padding) and the data-group bytes per step (2 Psi (dp-1)/dp) (check_zero_runs.py).
# The model is 63 wide (3 heads of 21), vocab 256, seq_len 32, so that no stage's parameter
# count divides the data degree (check_zero_runs.py asserts it).
#   zero_equivalence.sh TRAIN_AND_DUMP CONFIG WORK_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -eu
bin=$1 config=$2 work=$3
shift 3
here=$(dirname "$0")
rm -rf "$work"
mkdir -p "$work"
steps=10
common="--set train.steps=$steps --set train.global_batch=16 --set train.micro_batch=2 \
  --set train.val_every=0 --set data.val= --set runtime.threads=1 --set model.n_layer=4 \
  --set model.d_model=63 --set model.n_head=3 --set model.vocab_size=256 \
  --set model.seq_len=32 --set optim.warmup_steps=2"

run() {  # name ranks pipeline data stage_layers zero [more --set ...]
  name=$1 np=$2 pp=$3 dp=$4 layers=$5 zero=$6
  shift 6
  echo "== $name: $np rank(s), pipeline $pp x data $dp, stage_layers $layers, zero $zero $*"
  # shellcheck disable=SC2086
  "$MPI" $MPIFLAGS -np "$np" "$bin" --config "$config" --out "$work/$name" $common \
    --set parallel.pipeline="$pp" --set parallel.data="$dp" --set parallel.stage_layers="$layers" \
    --set parallel.zero="$zero" "$@"
}
MPI=$1
shift
MPIFLAGS="$*"
status=0
for zero in 0 1; do
  run pp2_1-3_dp2_zero$zero        4 2 2 '[1,3]'     $zero
  run dp4_zero$zero                4 1 4 '"uniform"' $zero
  run pp2_3-1_dp2_untied_zero$zero 4 2 2 '[3,1]'     $zero --set model.tie_embeddings=false
done
for layout in pp2_1-3_dp2 dp4 pp2_3-1_dp2_untied; do
  /usr/bin/python3 "$here/compare_runs.py" "$work/${layout}_zero0" "$work/${layout}_zero1" \
    --loss-rtol 1e-6 || status=1
  /usr/bin/python3 "$here/check_zero_runs.py" "$work/${layout}_zero0" "$work/${layout}_zero1" \
    --steps $steps || status=1
done
[ $status = 0 ] && echo "zero_equivalence: PASS" || echo "zero_equivalence: FAIL"
exit $status
