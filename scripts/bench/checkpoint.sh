#!/usr/bin/env bash
# checkpoint.sh: checkpoint save and load of the gpt2-124m-sized state (1.5 GB: fp32 weights
# and AdamW's two moments) against the disk's own sequential write speed, measured side by side
# in one run (dd with fsync, the same bytes, the same directory); and the training stall per
# save as a fraction of the step time, alone and amortised over checkpoint intervals.
#
#   scripts/bench/checkpoint.sh                    # 1 rank, then 4 ranks (pipeline 2 x data 2)
#   RANKS="1" DIR=/mnt/fast scripts/bench/checkpoint.sh
#
# Environment: DIR (where to write; default a temp dir under $TMPDIR), RANKS ("1 4"),
# CONFIG (configs/gpt2-124m.toml), BUILD_DIR (build), MPIEXEC (mpirun), MPIFLAGS,
# INTERVALS ("10 100 1000": checkpoint.every values to amortise over), KEEP_TMP=1.
# Prints one table; exit 0 when every figure was measured.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
set -f
CONFIG=${CONFIG:-configs/gpt2-124m.toml}
BUILD_DIR=${BUILD_DIR:-build}
RANKS=${RANKS:-"1 4"}
INTERVALS=${INTERVALS:-"10 100 1000"}
MPIEXEC=${MPIEXEC:-mpirun}
if [ -z "${MPIFLAGS+x}" ]; then
  MPIFLAGS="--oversubscribe"
  [ "$(id -u)" = 0 ] && MPIFLAGS="$MPIFLAGS --allow-run-as-root"
fi
NUPIPE=$BUILD_DIR/bin/nupipe
[ -x "$NUPIPE" ] || { echo "build first: scripts/build.sh build Release"; exit 1; }
BASE=$(mktemp -d "${DIR:-${TMPDIR:-/tmp}}/nupipe-ckpt-bench.XXXXXX") || exit 1
[ "${KEEP_TMP:-0}" = 1 ] || trap 'rm -rf "$BASE"' EXIT

# The disk: the same number of bytes as one checkpoint, written and fsynced.
dd_mbps() {
  local bytes=$1 out
  out=$(dd if=/dev/zero of="$BASE/dd.bin" bs=8M count=$(( (bytes + 8388607) / 8388608 )) \
        conv=fsync 2>&1 | tail -n 1)
  rm -f "$BASE/dd.bin"
  # "... bytes (...) copied, 2.1 s, 712 MB/s"
  awk -v line="$out" 'BEGIN { n = split(line, f, ","); split(f[n-1], s, " ");
                              split(line, b, " "); printf "%.0f\n", b[1] / s[1] / 1e6 }'
}

# The same bytes written from a buffer of their size in memory (what a save must do: the
# source is not one small cache-hot block as dd's is), fsynced.
raw_mbps() {
  /usr/bin/python3 - "$1" "$BASE/raw.bin" <<'PY'
import os, sys, time
import numpy as np
n = int(sys.argv[1]); path = sys.argv[2]
buf = np.random.default_rng(0).random(n // 4, dtype=np.float32)
t = time.time()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
mv = memoryview(buf).cast("B"); off = 0
while off < len(mv):
    off += os.write(fd, mv[off:off + (64 << 20)])
os.fsync(fd); os.close(fd); os.remove(path)
print("%.0f" % (len(mv) / 1e6 / (time.time() - t)))
PY
}

printf '%-22s %9s %8s %8s %9s %9s %9s %8s %9s %8s  %s\n' layout "state MB" "save s" "MB/s" \
  "disk MB/s" "raw MB/s" "vs disk" "verify s" "load s" "step s" \
  "stall per save, amortised at every = $INTERVALS"
status=0
for np in $RANKS; do
  case $np in
    1) layout=(--set parallel.pipeline=1 --set parallel.data=1); name="1 rank" ;;
    4) layout=(--set parallel.pipeline=2 --set parallel.data=2 --set 'parallel.stage_layers=[5,7]'
               --set parallel.zero=1 --set train.global_batch=2); name="pp2 [5,7] x dp2 zero1" ;;
    *) echo "RANKS: 1 or 4"; exit 1 ;;
  esac
  run=$BASE/run$np
  common=(--set run.dir="$run" --set train.global_batch=1 --set checkpoint.every=1
          --set checkpoint.keep=1 "${layout[@]}")
  # Three steps, a save after each; then a relaunch that loads the last one and trains one.
  $MPIEXEC $MPIFLAGS -np "$np" "$NUPIPE" train "$CONFIG" --set train.steps=3 "${common[@]}" \
    >"$run.log" 2>&1 || { echo "training failed: $run.log"; tail "$run.log"; status=1; continue; }
  $MPIEXEC $MPIFLAGS -np "$np" "$NUPIPE" train "$CONFIG" --set train.steps=4 "${common[@]}" \
    >"$run.resume.log" 2>&1 || { echo "resume failed"; tail "$run.resume.log"; status=1; continue; }
  # The disk right after, with the same bytes (its speed varies with the page cache's state:
  # the median of three).
  bytes=$(stat -c %s "$run/checkpoints/step_00000004/state.h5")
  disk=$( (dd_mbps "$bytes"; dd_mbps "$bytes"; dd_mbps "$bytes") | sort -n | sed -n 2p)
  raw=$( (raw_mbps "$bytes"; raw_mbps "$bytes"; raw_mbps "$bytes") | sort -n | sed -n 2p)
  # The saves after steps 2 and 3 (the first also warms the page cache); step times of the
  # steps without a save in them.
  awk -v name="$name" -v disk="$disk" -v raw="$raw" -v intervals="$INTERVALS" -v resume="$run.resume.log" '
    /checkpoint \((interval|last step)\)/ {
      for (i = 1; i <= NF; i++) {
        if ($i == "MB" && $(i+1) == "in") { mb = $(i-1); s = $(i+2) }
        if ($i == "back") rb = $(i+2)
      }
      n++; if (n > 1) { save += s; verify += rb; m++ }
    }
    /ms\/step/ { for (i = 1; i <= NF; i++) if ($(i+1) == "ms/step") { st += $i / 1000; k++ } }
    END {
      while ((getline line < resume) > 0) {
        if (line ~ /checksums verified in/) { match(line, /verified in [0-9.]+/); v = substr(line, RSTART + 12, RLENGTH - 12) }
        if (line ~ /checkpoint loaded/) { match(line, /in [0-9.]+ s$/); l = substr(line, RSTART + 3, RLENGTH - 5) }
      }
      save /= m; verify /= m; st /= k
      amort = ""
      ni = split(intervals, iv, " ")
      for (j = 1; j <= ni; j++) amort = amort sprintf("%s%.2f%% @%d", j > 1 ? ", " : "", 100 * (save + verify) / (iv[j] * st), iv[j])
      printf "%-22s %9.1f %8.2f %8.0f %9.0f %9.0f %8.0f%% %9.2f %8.2f %8.2f  %.0f%% of a step; %s\n",
        name, mb, save, mb / save, disk, raw, 100 * mb / save / disk, verify, v + l, st,
        100 * (save + verify) / st, amort
    }' "$run.log"
done
echo "disk MB/s: dd from /dev/zero with conv=fsync (a cache-hot 8 MB source); raw MB/s: the same"
echo "bytes from a buffer of their size (median of 3 each, right after the run)."
echo "save s: from the first write to the commit (manifest, fsyncs, rename); verify s: the new"
echo "checkpoint read back against its checksums before older ones may be deleted; load s:"
echo "verification + reading this rank's part on resume; stall = save + verify, per step time."
exit $status
