#!/bin/sh
# run_export.sh: the scripts/export_hf.py test: check_export.py trains a tiny model with nupipe,
# exports its checkpoint to a Hugging Face GPT-2 state_dict and checks weights, loss and refusals.
#   run_export.sh NUPIPE CONFIG.toml WORKDIR [--set key=value ...]
# NUPIPE_EXPORT_CHECK=check_export_llama.py runs the llama family's checker instead.
# Exit: 0 pass, 1 a check failed, 2 a tool failed, 77 (skipped) without python3-torch/h5py.
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 NUPIPE CONFIG.toml WORKDIR [--set key=value ...]" >&2
  exit 2
fi
nupipe=$1 config=$2 workdir=$3
shift 3
python=${NUPIPE_PYTHON:-/usr/bin/python3}
here=$(dirname "$0")

if ! "$python" -c 'import torch, h5py, numpy, tomllib' 2>/dev/null; then
  echo "SKIP: $python cannot import torch, h5py, numpy and tomllib (Python >= 3.11;" \
       "scripts/setup.sh installs python3-torch python3-h5py python3-numpy)" >&2
  exit 77
fi
exec "$python" "$here/${NUPIPE_EXPORT_CHECK:-check_export.py}" --nupipe "$nupipe" --config "$config" \
  --workdir "$workdir" "$@"
