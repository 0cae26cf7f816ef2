#!/usr/bin/env bash
# train_with_restarts.sh: runs a training command (usually mpirun ... nupipe train ...) and,
# after a failure, relaunches the same command up to N times; each relaunch resumes from the
# last committed checkpoint (checkpoint.resume = "auto"). Every restart is logged with its
# phases timed: failure detected, job torn down, checkpoint loaded, first step done.
#
# usage: scripts/train_with_restarts.sh [--max-restarts N] [--log FILE] -- COMMAND [ARGS...]
#   --max-restarts N  relaunches allowed after failures (default 3)
#   --log FILE        also append the job's output and the restart log to FILE
# Exit: the command's last exit code (0 once a run finishes). Exit codes that a relaunch cannot
# fix are not retried: 2 (bad usage or config), 3 (bad data), 4 (checkpoint problem),
# 6 (non-finite loss). Everything else (5: a peer failed; 137: killed; ...) is.
set -uo pipefail

max_restarts=3
log_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --max-restarts) max_restarts=$2; shift 2 ;;
    --log) log_file=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "train_with_restarts: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "train_with_restarts: no command given (see --help)" >&2; exit 2; }
case "$max_restarts" in ''|*[!0-9]*) echo "train_with_restarts: --max-restarts needs a number" >&2; exit 2 ;; esac

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
say() {
  echo "[restarts] $*"
  [ -z "$log_file" ] || echo "[restarts] $*" >>"$log_file"
}

# Runs the command once, echoing its output, and records when the phases were seen:
# the first error line (failure detected), "checkpoint loaded", the first "step " line.
run_once() {
  local marks=$1
  shift
  : >"$marks"
  set +e
  "$@" 2>&1 | {
    while IFS= read -r line; do
      printf '%s\n' "$line"
      [ -z "$log_file" ] || printf '%s\n' "$line" >>"$log_file"
      case "$line" in
        *"checkpoint loaded"*) grep -q '^loaded ' "$marks" || echo "loaded $(now)" >>"$marks" ;;
        *"] step "*) grep -q '^step ' "$marks" || echo "step $(now)" >>"$marks" ;;
        *"error"*|*"exiting with code"*|*"killed"*|*"Killed"*|*"exited on signal"*)
          grep -q '^failed ' "$marks" || echo "failed $(now)" >>"$marks" ;;
      esac
    done
  }
  local rc=${PIPESTATUS[0]}
  echo "exit $(now) $rc" >>"$marks"
  return "$rc"
}
mark() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }

marks=$(mktemp "${TMPDIR:-/tmp}/nupipe_restarts_XXXXXX")
trap 'rm -f "$marks" "$marks.prev"' EXIT
attempt=0
prev_failed="" prev_exit=""
while :; do
  attempt=$((attempt + 1))
  t_launch=$(now)
  say "attempt $attempt: $*"
  run_once "$marks" "$@"
  rc=$?
  if [ -n "$prev_exit" ]; then  # the phases of the restart that this attempt was
    loaded=$(mark loaded "$marks") step=$(mark step "$marks")
    loaded_s="n/a (started from step 0)" step_s="n/a"
    [ -z "$loaded" ] || loaded_s="+$(since "$prev_failed" "$loaded")"
    [ -z "$step" ] || step_s="+$(since "$prev_failed" "$step")"
    say "restart $((attempt - 1)) phases (seconds from failure detected):" \
      "job torn down +$(since "$prev_failed" "$prev_exit")," \
      "relaunched +$(since "$prev_failed" "$t_launch"), checkpoint loaded $loaded_s," \
      "first step done $step_s"
  fi
  if [ "$rc" -eq 0 ]; then
    say "attempt $attempt finished (exit 0) after $attempt attempt(s)"
    exit 0
  fi
  case "$rc" in
    2|3|4|6)
      say "attempt $attempt failed with exit $rc, which a relaunch cannot fix (docs/sre-runbook.md); giving up"
      exit "$rc" ;;
  esac
  t_exit=$(awk '$1 == "exit" { print $2 }' "$marks")
  failed=$(mark failed "$marks")
  failed=${failed:-$t_exit}
  say "attempt $attempt failed with exit $rc: failure detected at +$(since "$t_launch" "$failed") s" \
    "after launch, job torn down $(since "$failed" "$t_exit") s later"
  if [ $((attempt - 1)) -ge "$max_restarts" ]; then
    say "no restarts left (--max-restarts $max_restarts); giving up with exit $rc"
    exit "$rc"
  fi
  prev_failed=$failed prev_exit=$t_exit
done
