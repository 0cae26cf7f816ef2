#!/usr/bin/env bash
# test.sh: installs what is missing, builds, and runs the whole suite: unit tests (gradient
# checks, data, config, optimizer, HDF5), end-to-end CLI tests and the PyTorch reference tests
# on a Release build (with the CUDA backend compiled and linked when nvcc is found: its tests
# report skipped without a GPU), then the unit tests and the nupipe executable itself (a 4-rank
# save / kill / resume / reshard cycle and a fixed-seed fuzz subset: tests/sanitize/) under
# AddressSanitizer + UBSan + LeakSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$(date +%s)

bash scripts/setup.sh

echo "== Release build"
# The CUDA code is compiled and linked here as a check (nothing CUDA runs without a GPU): one
# architecture, sm_90 (H100/H200), is enough for that and halves nvcc's share of the build.
# scripts/gpu/bundle.sh builds its own directory for every architecture the project targets.
# The libraries build as unity (batched) translation units, which cut a fresh build's time by
# about a quarter on 2 cores; each file still compiles on its own in an ordinary build.
unity=-DCMAKE_UNITY_BUILD=ON
NUPIPE_CMAKE_ARGS="$unity -DCMAKE_CUDA_ARCHITECTURES=90 ${NUPIPE_CMAKE_ARGS:-}" \
  bash scripts/build.sh build Release
# The Sanitize build (ASan + UBSan; host code: the CUDA kernels are compute-sanitizer's, on a
# GPU) runs at the lowest priority while the Release tests run: many of those wait on timeouts,
# peers and signals, and the build takes the cores they leave idle, not the ones they use.
echo "== Sanitize build (in the background, nice 19) and tests (Release)"
mkdir -p build-asan
NUPIPE_CMAKE_ARGS="$unity -DNUPIPE_CUDA=OFF" nice -n 19 \
  bash scripts/build.sh build-asan Sanitize unit_tests nupipe >build-asan/build.log 2>&1 &
asan_build=$!
release_failed=0
(cd build && ctest --output-on-failure --timeout 600 -j 2) || release_failed=1
echo "== Sanitize build: $( (kill -0 $asan_build 2>/dev/null && echo "finishing") || echo "done")"
if ! wait $asan_build; then
  tail -50 build-asan/build.log
  echo "== Sanitize build FAILED (its log: build-asan/build.log)"
  exit 1
fi
if [ "$release_failed" != 0 ]; then
  echo "== tests (Release) FAILED (the output above)"
  exit 1
fi
echo "== unit tests (Sanitize), in two shards side by side (one core each)"
pids=()
for shard in 0 1; do
  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$shard \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    build-asan/bin/unit_tests --gtest_brief=1 >"build-asan/unit_tests.shard$shard.log" 2>&1 &
  pids+=($!)
done
asan_failed=0
for shard in 0 1; do
  wait "${pids[$shard]}" || asan_failed=1
  cat "build-asan/unit_tests.shard$shard.log"
done
if [ "$asan_failed" != 0 ]; then
  echo "== unit tests (Sanitize) FAILED (the shards' output above)"
  exit 1
fi
echo "== nupipe under the sanitizers: 4-rank cycle and fuzz subset (Sanitize)"
(cd build-asan && ctest -L sanitize --output-on-failure --timeout 600 -j 2)

echo "== all tests passed in $(( $(date +%s) - start )) s"
