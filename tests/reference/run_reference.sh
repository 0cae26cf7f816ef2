#!/bin/sh
# run_reference.sh: one PyTorch reference test: dump_reference writes nupipe's loss and gradients
# for one batch, check_reference.py recomputes them in PyTorch (float64) and compares.
#   run_reference.sh DUMP_REFERENCE CONFIG.toml OUT.h5 [--set key=value ...]
# Exit: 0 pass, 1 mismatch, 2 malformed file or dump failure, 77 (skipped) without python3-torch.
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 DUMP_REFERENCE CONFIG.toml OUT.h5 [--set key=value ...]" >&2
  exit 2
fi
dump=$1 config=$2 out=$3
shift 3
python=${NUPIPE_PYTHON:-/usr/bin/python3}
here=$(dirname "$0")

if ! "$python" -c 'import torch, h5py, numpy' 2>/dev/null; then
  echo "SKIP: $python cannot import torch, h5py and numpy (scripts/setup.sh installs python3-torch python3-h5py python3-numpy)" >&2
  exit 77
fi
rm -f "$out"
echo "+ $dump --config $config --out $out $*"
"$dump" --config "$config" --out "$out" "$@"
rc=$?
if [ $rc -ne 0 ]; then
  echo "FAIL: dump_reference exited with $rc" >&2
  exit 2
fi
exec "$python" "$here/check_reference.py" "$out"
