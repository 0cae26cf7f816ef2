#!/usr/bin/env bash
# bundle.sh: step 1 of 2, on the build machine (Debian 12 with scripts/setup.sh's packages and
# CUDA 13 under /usr/local/cuda; no GPU needed). Builds nupipe with the CUDA backend for sm_80 and
# sm_90 into build-gpu/ and gathers what the GPU machine lacks into .gpu-bundle/: the binaries,
# the shared libraries they load that are not glibc, libstdc++ or CUDA's own (Open MPI, HDF5,
# OpenBLAS, spdlog, fmt, gfortran...), and Open MPI's runtime (mpirun, orted, its plugins and
# help files) in the layout its OPAL_PREFIX relocation expects. The GPU machine (nvcc, CMake,
# PyTorch, its own CUDA libraries and NCCL; no Debian packages, no network) then runs
# scripts/gpu/check.sh with .gpu-bundle carried along (step 2).
#
#   scripts/gpu/bundle.sh            # then, with the device tool: carry [".gpu-bundle.tar.xz"]
#                                    # and run: bash scripts/gpu/check.sh
# Why binaries and not headers: the binaries built here are the ones CI tests, nvcc here targets
# the GPU machine's architectures, and nothing has to be configured there.
# Environment: BUILD_DIR (build-gpu), BUNDLE (.gpu-bundle), JOBS (nproc).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
BUNDLE=${BUNDLE:-.gpu-bundle}
JOBS=${JOBS:-$(nproc)}
grep -qx "/$BUNDLE/" .git/info/exclude 2>/dev/null || echo "/$BUNDLE/" >>.git/info/exclude

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DNUPIPE_CUDA=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/configs" "$BUNDLE/scripts"
bins=(nupipe unit_tests)  # what check.sh runs
for b in "${bins[@]}"; do
  [ -x "$BUILD_DIR/bin/$b" ] && cp "$BUILD_DIR/bin/$b" "$BUNDLE/bin/"
done
cp configs/*.toml "$BUNDLE/configs/"

# The libraries the binaries load, except the C/C++ runtime and CUDA's (the GPU machine has
# newer ones of both, matching its driver).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libnccl|libnvrtc|libnvJitLink)'
for b in "$BUNDLE"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  name=$(basename "$lib")
  [[ "$name" =~ $skip ]] && continue
  cp -L "$lib" "$BUNDLE/lib/$name"
done

# Open MPI's runtime, relocated with OPAL_PREFIX=$BUNDLE/ompi (Debian's layout under /usr).
ompi="$BUNDLE/ompi"
mkdir -p "$ompi/bin" "$ompi/lib/x86_64-linux-gnu" "$ompi/share"
cp -L /usr/bin/orterun "$ompi/bin/mpirun"
cp -L /usr/bin/orted "$ompi/bin/orted"
cp -rL /usr/lib/x86_64-linux-gnu/openmpi "$ompi/lib/x86_64-linux-gnu/"
rm -rf "$ompi/lib/x86_64-linux-gnu/openmpi/include"
cp -rL /usr/share/openmpi "$ompi/share/"
for plugin_dir in /usr/lib/x86_64-linux-gnu/pmix2 /usr/lib/x86_64-linux-gnu/pmix; do
  [ -d "$plugin_dir" ] && cp -rL "$plugin_dir" "$ompi/lib/x86_64-linux-gnu/"
done
# The plugins' own libraries.
find "$ompi" -name '*.so' -print0 | xargs -0 ldd 2>/dev/null | awk '$3 ~ /^\// {print $3}' |
  sort -u | while read -r lib; do
    name=$(basename "$lib")
    [[ "$name" =~ $skip ]] && continue
    [ -e "$BUNDLE/lib/$name" ] || cp -L "$lib" "$BUNDLE/lib/$name"
  done

strip --strip-unneeded "$BUNDLE"/lib/*.so* "$BUNDLE"/bin/* 2>/dev/null || true
# What travels is the compressed bundle (the device tool carries at most 64 MiB); check.sh
# unpacks it.
tar -C "$(dirname "$BUNDLE")" -cf - "$(basename "$BUNDLE")" | xz -T0 -6 >"$BUNDLE.tar.xz"
grep -qx "/$BUNDLE.tar.xz" .git/info/exclude || echo "/$BUNDLE.tar.xz" >>.git/info/exclude
size=$(du -sm "$BUNDLE.tar.xz" | cut -f1)
echo "bundle: $BUNDLE.tar.xz, ${size} MiB ($(du -sm "$BUNDLE" | cut -f1) MiB unpacked; $(ls "$BUNDLE/bin" | tr '\n' ' '))"
if [ "$size" -gt 60 ]; then
  echo "bundle: over the device tool's 64 MiB carry limit" >&2
  exit 1
fi
