#!/usr/bin/env bash
# demo.sh: installs what is missing, builds, and trains the embedded default (configs/tiny.toml):
# a small GPT on a synthetic corpus whose entropy floor nupipe prints, so the loss can be seen
# approaching it. Extra arguments are passed to `nupipe train` (e.g. --set train.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build Release nupipe >/dev/null
run_dir="runs/demo-$(date +%Y%m%d-%H%M%S)"
exec build/bin/nupipe train configs/tiny.toml --set run.dir="$run_dir" "$@"
