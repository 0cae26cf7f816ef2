#!/usr/bin/env bash
# demo.sh: installs what is missing, builds, and trains the embedded default (configs/tiny.toml)
# on 4 ranks: 2 pipeline stages split unevenly ([1, 3] blocks) x 2 data-parallel replicas, on a
# synthetic corpus whose entropy floor nupipe prints, so the loss can be seen approaching it.
# Extra arguments are passed to `nupipe train` (e.g. --set train.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The first build compiles nupipe and its libraries: 2.7 CPU-minutes measured (about 1.5
# minutes on 2 idle cores), 4.5 with nvcc on PATH, which adds the CUDA backend; later runs
# rebuild only what changed. Its progress is shown.
if [ -x build/bin/nupipe ]; then
  echo "demo: updating the build in build/"
else
  echo "demo: first build of nupipe in build/ (2.7 CPU-minutes, 4.5 with nvcc: about 1.5-2.5" \
       "minutes on 2 idle cores, more on a busy machine)"
fi
build_start=$SECONDS
bash scripts/build.sh build Release nupipe
echo "demo: build done in $((SECONDS - build_start)) s; training on 4 ranks (about 20 s on 2 cores)"
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told twice
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
run_dir="runs/demo-$(date +%Y%m%d-%H%M%S)"
exec mpirun -np 4 --oversubscribe build/bin/nupipe train configs/tiny.toml \
  --set run.dir="$run_dir" --set run.trace=true "$@"
