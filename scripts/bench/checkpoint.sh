#!/usr/bin/env bash
# checkpoint.sh: checkpoint save and load of the gpt2-124m-sized state (1.5 GB: fp32 weights
# and AdamW's two moments) against the disk's own sequential write speed, measured side by side
# in one run (dd with fsync, the same bytes, the same directory); and the training stall per
# save as a fraction of the step time, alone and amortised over checkpoint intervals. Then
# checkpoint.async off and on side by side: the training stall per save as a fraction of a
# step, the two runs interleaved over ROUNDS rounds (median and spread).
#
#   scripts/bench/checkpoint.sh                    # 1 rank, then 4 ranks (pipeline 2 x data 2)
#   RANKS="1" DIR=/mnt/fast scripts/bench/checkpoint.sh
#   RANKS="" ROUNDS=3 scripts/bench/checkpoint.sh  # only async off / on
#
# Environment: DIR (where to write; default a temp dir under $TMPDIR), RANKS ("1 4"),
# CONFIG (configs/gpt2-124m.toml), BUILD_DIR (build), MPIEXEC (mpirun), MPIFLAGS,
# INTERVALS ("10 100 1000": checkpoint.every values to amortise over), ROUNDS (3; 0 skips
# the async comparison), BATCH (1: train.global_batch of the async comparison), THREADS (1:
# its runtime.threads, the same in both modes; 1 leaves a core of the 2 here to the writer, as
# a GPU run leaves the host's cores to it), KEEP_TMP=1.
# Prints the tables; exit 0 when every figure was measured.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
set -f
CONFIG=${CONFIG:-configs/gpt2-124m.toml}
BUILD_DIR=${BUILD_DIR:-build}
RANKS=${RANKS-"1 4"}  # RANKS="" skips the save/load table
INTERVALS=${INTERVALS:-"10 100 1000"}
ROUNDS=${ROUNDS:-3}
BATCH=${BATCH:-1}
THREADS=${THREADS:-1}
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

# The same bytes written from a buffer of their size in memory, in the pattern of the saves it
# is compared with: three files, 4 MiB writes (the staging chunk), each fsynced, the one before
# removed after the next is written (checkpoint.keep = 1), the step's time between writes; the
# MB/s of writes 2 and 3 (the saves measured). The pattern matters on virtual machines, whose
# freed page-cache pages go back to the host within seconds and fault in again on the next
# write: without the gaps this figure comes out several times higher than any save can reach.
raw_mbps() {  # BYTES GAP_S
  /usr/bin/python3 - "$1" "$2" "$BASE/raw" <<'PY'
import os, sys, time
import numpy as np
n, gap, stem = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
buf = np.random.default_rng(0).random(n // 4, dtype=np.float32)
mv = memoryview(buf).cast("B")
seconds = []
for i in range(3):
    t = time.time()
    fd = os.open(f"{stem}{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    off = 0
    while off < len(mv):
        off += os.pwrite(fd, mv[off:off + (4 << 20)], off)
    os.fsync(fd); os.close(fd)
    seconds.append(time.time() - t)
    if i > 0: os.remove(f"{stem}{i - 1}")
    time.sleep(gap)
os.remove(f"{stem}2")
print("%.0f" % (2 * len(mv) / 1e6 / (seconds[1] + seconds[2])))
PY
}

printf '%-22s %9s %8s %8s %9s %9s %7s %7s %9s %8s %8s  %s\n' layout "state MB" "save s" "MB/s" \
  "disk MB/s" "raw MB/s" "vs dd" "vs raw" "verify s" "load s" "step s" \
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
  step_s=$(awk '/ms\/step/ { for (i = 1; i <= NF; i++) if ($(i+1) == "ms/step") { t += $i; k++ } }
               END { printf "%.2f", k ? t / k / 1000 : 0 }' "$run.log")
  raw=$(raw_mbps "$bytes" "$step_s")
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
      printf "%-22s %9.1f %8.2f %8.0f %9.0f %9.0f %6.0f%% %6.0f%% %9.2f %8.2f %8.2f  %.0f%% of a step; %s\n",
        name, mb, save, mb / save, disk, raw, 100 * mb / save / disk, 100 * mb / save / raw,
        verify, v + l, st,
        100 * (save + verify) / st, amort
    }' "$run.log"
done
echo "disk MB/s: dd from /dev/zero with conv=fsync (a cache-hot 8 MB source, median of 3);"
echo "raw MB/s: the same bytes from a buffer of their size in the saves' pattern (4 MiB writes,"
echo "fsync, keep 1, a step's time apart), right after the run; vs raw is the goal's measure."
echo "save s: from the first write to the commit (manifest, fsyncs, rename); verify s: the new"
echo "checkpoint read back against its checksums before older ones may be deleted; load s:"
echo "verification + reading this rank's part on resume; stall = save + verify, per step time."

# ---- checkpoint.async off / on: the training stall per save ---------------------------------
# One rank, 5 steps, a save every 2 (the saves after steps 2 and 4 are measured; the last one,
# after step 5, is waited for by design). Off: the save and its read-back block training.
# On: the training thread is blocked for the snapshot, the step-boundary agreements and any
# wait (the log's "training stalled"), and the steps during the background write run slower
# (the thread shares the cores): their step time above the synchronous run's median step of
# the same round counts too. Both as a fraction of that median step.
[ "$ROUNDS" -gt 0 ] 2>/dev/null || exit $status
stall_of() {  # LOG RUN_DIR MODE [BASE_S] -> "stall_s step_s blocked_s slowdown_s" (means)
  /usr/bin/python3 - "$@" <<'PY'
import json, re, statistics, sys
log, run, mode = sys.argv[1:4]
steps = {}
for line in open(run + "/metrics.jsonl"):
    r = json.loads(line); steps[r["step"]] = r["step_ms"] / 1000
base = float(sys.argv[4]) if len(sys.argv) > 4 else statistics.median(steps[s] for s in (2, 3, 4, 5))
stalls, blocked, slow = [], [], []
for line in open(log):
    m = re.search(r"checkpoint \(interval\): \S+/step_(\d+) \| [0-9.]+ MB in ([0-9.]+) s .*read back in ([0-9.]+) s", line)
    if not m: continue
    step = int(m.group(1))
    if mode == "off":
        blocked.append(float(m.group(2)) + float(m.group(3)))
        slow.append(0.0)
    else:
        blocked.append(float(re.search(r"training stalled ([0-9.]+) s", line).group(1)))
        slow.append(max(0.0, steps[step + 1] - base))
    stalls.append(blocked[-1] + slow[-1])
print("%.4f %.4f %.4f %.4f" % (statistics.mean(stalls), base, statistics.mean(blocked),
                               statistics.mean(slow)))
PY
}
echo
echo "checkpoint.async off / on, 1 rank, runtime.threads = $THREADS of $(nproc) cores, $CONFIG" \
  "state, $ROUNDS interleaved rounds:"
printf '%-6s %-26s %-26s %-30s %s\n' round "off: stall s (% of a step)" "on: stall s (% of a step)" \
  "on: blocked s + slow-down s" "step s"
offs=() ons=() blocks=()
for r in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    run=$BASE/async_${mode}_$r
    async=false; [ "$mode" = on ] && async=true
    "$NUPIPE" train "$CONFIG" --set run.dir="$run" --set parallel.pipeline=1 --set parallel.data=1 \
      --set parallel.stage_layers=uniform --set runtime.threads="$THREADS" \
      --set train.global_batch="$BATCH" --set train.steps=5 --set checkpoint.every=2 --set checkpoint.keep=1 \
      --set run.log_every=1 --set checkpoint.async=$async >"$run.log" 2>&1 ||
      { echo "training failed: $run.log"; tail "$run.log"; status=1; continue 2; }
    if [ "$mode" = off ]; then
      read -r s_off base _ _ < <(stall_of "$run.log" "$run" off)
    else
      read -r s_on _ b_on d_on < <(stall_of "$run.log" "$run" on "$base")
    fi
    rm -rf "$run/checkpoints"
  done
  p_off=$(awk -v s="$s_off" -v b="$base" 'BEGIN { printf "%.2f", 100 * s / b }')
  p_on=$(awk -v s="$s_on" -v b="$base" 'BEGIN { printf "%.2f", 100 * s / b }')
  p_block=$(awk -v s="$b_on" -v b="$base" 'BEGIN { printf "%.2f", 100 * s / b }')
  offs+=("$p_off") ons+=("$p_on") blocks+=("$p_block")
  printf '%-6s %-26s %-26s %-30s %.2f\n' "$r" "$s_off ($p_off%)" "$s_on ($p_on%)" \
    "$b_on ($p_block%) + $d_on" "$base"
done
summary() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
  printf "median %.2f%% (min %.2f%%, max %.2f%%)", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'; }
[ ${#offs[@]} -gt 0 ] || { echo "no round measured"; exit 1; }
echo "stall per save, % of a step: async off $(summary "${offs[@]}"); async on $(summary "${ons[@]}")"
echo "  of which the training thread blocked (async on): $(summary "${blocks[@]}")"
echo "off: save + read-back (training waits for both); on: snapshot + agreements + waits, plus"
echo "the slow-down of the step that ran beside the background write, against the off run's"
echo "median step of the same round."
exit $status
