#!/usr/bin/env bash
# zero.sh: ZeRO-1 (parallel.zero = 1) against the replicated optimizer (parallel.zero = 0), side
# by side in one run on the same model, data, seed and layout: per rank the optimizer bytes the
# allocator holds, the data-group bytes sent per step (measured by the communicator's ring
# accounting) against the ZeRO paper's 2 Psi (dp-1)/dp, the largest loss difference, and the
# step-time ratio (noise on shared CPUs; bytes are the result).
#
#   scripts/bench/zero.sh                          # tiny.toml widths, 3 layouts, 10 steps
#   D_MODEL=63 N_HEAD=3 scripts/bench/zero.sh      # a width whose stage sizes need padding
#   LAYOUTS="2x2:[1,3] 1x4:uniform" STEPS=20 scripts/bench/zero.sh
#
# Environment: LAYOUTS (space-separated PIPELINExDATA:STAGE_LAYERS; default
# "2x2:[1,3] 1x4:uniform 1x2:uniform"), STEPS (10), D_MODEL (64), N_HEAD (4), N_LAYER (4),
# SEQ (64), CONFIG (configs/tiny.toml), BUILD_DIR (build), SKIP_BUILD=1, KEEP_TMP=1, PYTHON,
# MPIEXEC (mpirun), MPIFLAGS (--oversubscribe, plus --allow-run-as-root as root).
# Runs build/bin/train_and_dump (the equivalence tests' driver: the real trainer, plus a
# per-rank stage.rankR.txt of buffer sizes, optimizer bytes and data-group bytes sent).
# Exit: 0 every figure measured and matching the formula; 1 otherwise.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
set -f  # LAYOUTS holds brackets: no globbing
PYTHON=${PYTHON:-/usr/bin/python3}
CONFIG=${CONFIG:-configs/tiny.toml}
LAYOUTS=${LAYOUTS:-"2x2:[1,3] 1x4:uniform 1x2:uniform"}
STEPS=${STEPS:-10}
D_MODEL=${D_MODEL:-64}
N_HEAD=${N_HEAD:-4}
N_LAYER=${N_LAYER:-4}
SEQ=${SEQ:-64}
BUILD_DIR=${BUILD_DIR:-build}
MPIEXEC=${MPIEXEC:-mpirun}
if [ -z "${MPIFLAGS+x}" ]; then
  MPIFLAGS="--oversubscribe"
  [ "$(id -u)" = 0 ] && MPIFLAGS="$MPIFLAGS --allow-run-as-root"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nupipe-zero.XXXXXX") || exit 1
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "zero: keeping $TMP"
else
  trap 'rm -rf "$TMP"' EXIT
fi
note() { echo "zero: $*" >&2; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$TMP/configure.log" 2>&1 ||
      { tail -n 30 "$TMP/configure.log" >&2; note "cmake configure failed (log above)"; exit 1; }
  fi
  cmake --build "$BUILD_DIR" -j --target train_and_dump >"$TMP/build.log" 2>&1 ||
    { tail -n 30 "$TMP/build.log" >&2; note "building train_and_dump failed (log above)"; exit 1; }
fi
BIN="$BUILD_DIR/bin/train_and_dump"
[ -x "$BIN" ] || { note "$BIN not found (build it: cmake --build $BUILD_DIR --target train_and_dump)"; exit 1; }

status=0
runs=()
for layout in $LAYOUTS; do
  degrees=${layout%%:*} layers=${layout#*:}
  pp=${degrees%x*} dp=${degrees#*x}
  [ "$layers" = uniform ] && layers='"uniform"'
  for zero in 0 1; do
    name="pp${pp}_dp${dp}_zero${zero}"
    echo "== $name: pipeline $pp x data $dp, stage_layers $layers, d_model $D_MODEL, $STEPS steps"
    # shellcheck disable=SC2086
    if ! "$MPIEXEC" $MPIFLAGS -np $((pp * dp)) "$BIN" --config "$CONFIG" --out "$TMP/$name" \
        --set train.steps="$STEPS" --set optim.warmup_steps=1 --set train.val_every=0 \
        --set data.val= --set runtime.threads=1 --set run.log_every=1 \
        --set model.d_model="$D_MODEL" --set model.n_head="$N_HEAD" \
        --set model.n_layer="$N_LAYER" --set model.seq_len="$SEQ" \
        --set parallel.pipeline="$pp" --set parallel.data="$dp" \
        --set parallel.stage_layers="$layers" --set parallel.zero="$zero" \
        >"$TMP/$name.log" 2>&1; then
      tail -n 20 "$TMP/$name.log" >&2
      note "ERROR: $name failed (output above)"
      status=1
    fi
  done
  runs+=("$TMP/pp${pp}_dp${dp}")
done

"$PYTHON" - "$STEPS" "${runs[@]}" <<'EOF' || status=1
import glob, json, os, statistics, sys

steps = int(sys.argv[1])

def stage_files(d):
    out = {}
    for p in glob.glob(os.path.join(d, "stage.rank*.txt")):
        with open(p) as f:
            out[int(os.path.basename(p)[10:-4])] = {k: int(v) for k, v in (l.split() for l in f if l.strip())}
    return out

def median_step_ms(d):
    try:
        rows = [json.loads(l) for l in open(os.path.join(d, "run", "metrics.jsonl")) if l.strip()]
    except OSError:
        return None
    timed = [r["step_ms"] for r in rows if r.get("step", 0) > 1]  # step 1 is warm-up
    return statistics.median(timed) if timed else None

ok = True
print()
print(f"zero: per rank, {steps} steps; Psi = bytes of the stage's flat gradient buffer (zero=1: padded "
      "to a multiple of dp); bytes/step = data-group Communicator::bytes_sent / steps")
hdr = (f"{'layout':<10} {'rank':>4} {'stage':>5} {'params':>8} {'pad':>3} | {'opt B zero0':>11} "
       f"{'opt B zero1':>11} {'ratio':>7} | {'B/step zero0':>12} {'formula':>12} | "
       f"{'B/step zero1':>12} {'formula':>12} | {'max loss rel diff':>17} {'step ms 1/0':>11}")
print(hdr)
print("-" * len(hdr))
for base in sys.argv[2:]:
    z0, z1 = base + "_zero0", base + "_zero1"
    s0, s1 = stage_files(z0), stage_files(z1)
    if not s0 or set(s0) != set(s1):
        print(f"{os.path.basename(base):<10} n/a (a run failed)")
        ok = False
        continue
    try:
        import numpy as np
        l0 = np.loadtxt(os.path.join(z0, "losses.txt"), ndmin=1)
        l1 = np.loadtxt(os.path.join(z1, "losses.txt"), ndmin=1)
        loss_diff = float(np.max(np.abs(l1 - l0) / np.abs(l0)))
    except (OSError, ValueError):
        loss_diff = None
        ok = False
    t0, t1 = median_step_ms(z0), median_step_ms(z1)
    t_ratio = f"{t1 / t0:.2f}" if t0 and t1 else "n/a"
    for rank in sorted(s0):
        a, b = s0[rank], s1[rank]
        dp, n, padded = b["data"], b["numel"], b["padded_numel"]
        psi0, psi1 = 4 * n, 4 * padded
        f0, f1 = 2 * psi0 * (dp - 1) / dp, 2 * psi1 * (dp - 1) / dp
        m0, m1 = a["data_bytes_sent"] / steps, b["data_bytes_sent"] / steps
        good = abs(m0 - f0) < 1 and m1 == f1 and dp * b["optimizer_bytes"] == a["optimizer_bytes"] + 8 * (padded - n)
        ok &= good
        print(f"{os.path.basename(base):<10} {rank:>4} {b['stage']:>5} {n:>8} {padded - n:>3} | "
              f"{a['optimizer_bytes']:>11} {b['optimizer_bytes']:>11} {a['optimizer_bytes'] / b['optimizer_bytes']:>7.5f} | "
              f"{m0:>12.0f} {f0:>12.1f} | {m1:>12.0f} {f1:>12.1f} | "
              f"{'n/a' if loss_diff is None else f'{loss_diff:.2e}':>17} {t_ratio:>11}"
              + ("" if good else "  MISMATCH"))
print()
print("ratio = optimizer bytes zero0 / zero1 (dp, less the padding); the zero0 formula is rounded "
      "down by the all-reduce accounting when dp does not divide Psi")
sys.exit(0 if ok else 1)
EOF
exit $status
