#!/usr/bin/env bash
# setup.sh: installs, idempotently, the Debian packages nupipe builds and tests with.
# Run as root (or with sudo available). Safe to run again: installed packages are skipped.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libspdlog-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libxxhash-dev
  libopenblas-openmp-dev libdnnl-dev libgtest-dev libgmock-dev
  python3-torch python3-h5py python3-numpy python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
