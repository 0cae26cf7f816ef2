#!/usr/bin/env bash
# demo.sh: installs what is missing, builds, and trains the embedded default (configs/tiny.toml)
# on 4 ranks: 2 pipeline stages split unevenly ([1, 3] blocks) x 2 data-parallel replicas, on a
# synthetic corpus whose entropy floor nupipe prints, so the loss can be seen approaching it.
# Extra arguments are passed to `nupipe train` (e.g. --set train.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build Release nupipe >/dev/null
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told twice
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
run_dir="runs/demo-$(date +%Y%m%d-%H%M%S)"
exec mpirun -np 4 --oversubscribe build/bin/nupipe train configs/tiny.toml \
  --set run.dir="$run_dir" --set run.trace=true "$@"
