#!/usr/bin/env bash
# kill_rank.sh: kill -9 one rank of a 4-rank training run (pipeline 2 x data 2) once training
# is under way; the job must end with a non-zero code within 60 s and leave no rank behind.
#
# usage: kill_rank.sh NUPIPE CONFIG RANK MPIRUN [MPIRUN_FLAGS...]
#   RANK: the MPI rank to kill (0..3). Prints the seconds from the kill to mpirun's exit.
# Exit 0: pass; 1: fail; 77: skipped (no mpirun).
set -u

NUPIPE=$1 CONFIG=$2 VICTIM_RANK=$3 MPIRUN=$4
shift 4
MPIRUN_FLAGS=("$@")
EXIT_LIMIT_S=60    # from kill -9 to mpirun's exit
START_LIMIT_S=30   # from launch to the first metrics line
NP=4

# Open MPI refuses to run as root without these; other MPIs ignore them.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

command -v "$MPIRUN" >/dev/null 2>&1 || { echo "SKIP: $MPIRUN not found"; exit 77; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nupipe_fault_XXXXXX")
RUN=$TMP/run
LOG=$TMP/mpirun.log
MP=""

now_ns() { date +%s%N; }
seconds_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# A process that exists and is not a zombie.
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ "${st#Z}" = "$st" ]
}

# The live nupipe processes of this job: named nupipe, with our unique run.dir on the
# command line (other jobs on this machine are left alone).
job_pids() {
  local p
  for p in $(pgrep -x nupipe); do
    alive "$p" || continue
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qxF "run.dir=$RUN" && echo "$p"
  done
}

# The MPI rank of process $1, from its environment.
rank_of() {
  tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null |
    sed -n 's/^\(OMPI_COMM_WORLD_RANK\|PMIX_RANK\|PMI_RANK\)=//p' | head -n 1
}

# Every process this script started goes, on every path out.
cleanup() {
  local p
  if [ -n "$MP" ] && alive "$MP"; then kill -TERM "$MP" 2>/dev/null; fi
  for p in $(job_pids); do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  if [ -n "$MP" ] && alive "$MP"; then
    sleep 2
    kill -KILL "$MP" 2>/dev/null
  fi
  for p in $(job_pids); do kill -KILL "$p" 2>/dev/null; done
  [ -n "$MP" ] && wait "$MP" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
  echo "FAIL: $*"
  echo "---- mpirun output (last 40 lines) ----"
  tail -n 40 "$LOG" 2>/dev/null
  exit 1
}

"$MPIRUN" "${MPIRUN_FLAGS[@]}" -np "$NP" "$NUPIPE" train "$CONFIG" \
  --set parallel.pipeline=2 --set parallel.data=2 --set 'parallel.stage_layers=[1,3]' \
  --set parallel.schedule=1f1b --set train.global_batch=8 --set train.micro_batch=2 \
  --set train.steps=100000 --set run.log_every=1 --set runtime.threads=1 \
  --set "run.dir=$RUN" </dev/null >"$LOG" 2>&1 &
MP=$!

# Training is under way once metrics.jsonl has a line.
t_launch=$(now_ns)
until [ -s "$RUN/metrics.jsonl" ] && grep -q . "$RUN/metrics.jsonl"; do
  alive "$MP" || fail "mpirun exited before training started"
  [ "$(seconds_since "$t_launch" | cut -d. -f1)" -lt "$START_LIMIT_S" ] ||
    fail "no line in metrics.jsonl after ${START_LIMIT_S} s"
  sleep 0.2
done

declare -A pid_of_rank=()
for p in $(job_pids); do
  r=$(rank_of "$p")
  [ -n "$r" ] && pid_of_rank[$r]=$p
done
[ "${#pid_of_rank[@]}" -eq "$NP" ] ||
  fail "expected $NP ranks of this job, found ${#pid_of_rank[@]}: ranks ${!pid_of_rank[*]}"
VICTIM=${pid_of_rank[$VICTIM_RANK]:-}
[ -n "$VICTIM" ] || fail "no process for rank $VICTIM_RANK"
alive "$MP" || fail "mpirun exited before the kill"
echo "training under way after $(seconds_since "$t_launch") s ($(grep -c . "$RUN/metrics.jsonl")" \
  "metrics lines); kill -9 rank $VICTIM_RANK (pid $VICTIM)"

t_kill=$(now_ns)
kill -KILL "$VICTIM" || fail "kill -9 $VICTIM failed"
while alive "$MP"; do
  if [ "$(seconds_since "$t_kill" | cut -d. -f1)" -ge "$EXIT_LIMIT_S" ]; then
    fail "mpirun still running ${EXIT_LIMIT_S} s after rank $VICTIM_RANK was killed" \
      "(surviving ranks: $(job_pids | tr '\n' ' '))"
  fi
  sleep 0.1
done
elapsed=$(seconds_since "$t_kill")
wait "$MP"
rc=$?
MP=""
echo "mpirun exited with code $rc, $elapsed s after kill -9 of rank $VICTIM_RANK"
[ "$rc" -ne 0 ] || fail "mpirun exited 0 although rank $VICTIM_RANK was killed"

# No rank of this job may outlive mpirun (zombies awaiting their reaper are dead and do not
# count); allow a few seconds for the last ones to be taken down.
t_exit=$(now_ns)
while [ -n "$(job_pids)" ]; do
  if [ "$(seconds_since "$t_exit" | cut -d. -f1)" -ge 10 ]; then
    left=$(job_pids | tr '\n' ',')
    fail "nupipe processes of this job still running 10 s after mpirun exited:" \
      "$(ps -o pid,stat,args -p "${left%,}")"
  fi
  sleep 0.2
done

# metrics.jsonl is flushed line by line: what was logged before the kill is whole.
if command -v python3 >/dev/null 2>&1; then
  python3 - "$RUN/metrics.jsonl" <<'EOF' || fail "metrics.jsonl has an incomplete or invalid line"
import json, sys
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "", "the last line is not terminated: %r" % lines[-1][:200]
for i, line in enumerate(lines[:-1]):
    rec = json.loads(line)
    assert rec["step"] == i + 1, "line %d has step %s" % (i, rec["step"])
print("metrics.jsonl: %d whole lines" % (len(lines) - 1))
EOF
fi

echo "PASS: killing rank $VICTIM_RANK ended the job (code $rc) in $elapsed s, no rank left"
exit 0
