#!/usr/bin/env bash
# setup.sh: installs, idempotently, the Debian packages nupipe builds and tests with, and the
# GPT-2 tokenizer's npm package (js-tiktoken, pinned by scripts/tokenizer/package-lock.json).
# Run as root (or with sudo available). Safe to run again: what is installed is skipped.
# ocl-icd-opencl-dev is listed because oneDNN's CMake config looks OpenCL up: libdnnl-dev only
# recommends it, and recommends are not installed here.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libspdlog-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libxxhash-dev
  libopenblas-openmp-dev libdnnl-dev ocl-icd-opencl-dev libgtest-dev libgmock-dev
  python3-torch python3-h5py python3-numpy python3-matplotlib python3-xxhash
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the GPT-2 tokenizer; a node from elsewhere (one that bundles npm) will do.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages, node and npm present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# js-tiktoken exactly as the lockfile pins it, into scripts/tokenizer/node_modules (the only
# download besides Debian's; nothing is fetched when nupipe builds or runs).
tok_dir="$(cd "$(dirname "$0")" && pwd)/tokenizer"
want=$(node -p "require('$tok_dir/package-lock.json').packages['node_modules/js-tiktoken'].version")
have=$(node -p "try { require('$tok_dir/node_modules/js-tiktoken/package.json').version } catch { '' }")
if [ "$have" = "$want" ]; then
  echo "setup: js-tiktoken $have present"
else
  echo "setup: installing js-tiktoken $want (npm ci in scripts/tokenizer)"
  (cd "$tok_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
