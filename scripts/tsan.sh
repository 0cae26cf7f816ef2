#!/usr/bin/env bash
# tsan.sh: builds nupipe with ThreadSanitizer (build-tsan/, CMAKE_BUILD_TYPE ThreadSanitize,
# cpu-only) and runs tests/sanitize/tsan_threads.py: two ranks with the watchdog, the heartbeat
# writer and the background checkpoint save running beside training, a stop signal during a
# background save, and a stopped peer ended by the watchdog. Exit 0 when ThreadSanitizer reports
# nothing (Open MPI's own locks and races are suppressed by library: tests/sanitize/tsan.supp).
# About 10 minutes on 2 cores for a fresh build, then about a minute. Not part of scripts/test.sh
# (a second instrumented build of everything would not fit the suite's time).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NUPIPE_CMAKE_ARGS="-DCMAKE_UNITY_BUILD=ON -DNUPIPE_CUDA=OFF ${NUPIPE_CMAKE_ARGS:-}" \
  bash scripts/build.sh build-tsan ThreadSanitize nupipe
mpi_flags=()
mpirun --version 2>/dev/null | grep -q "Open MPI" && mpi_flags=(--oversubscribe)
exec /usr/bin/python3 tests/sanitize/tsan_threads.py build-tsan/tsan_threads build-tsan/bin/nupipe \
  configs/tiny.toml tests/sanitize/tsan.supp mpirun "${mpi_flags[@]}"
