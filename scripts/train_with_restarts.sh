#!/usr/bin/env bash
# train_with_restarts.sh: runs a training command (usually mpirun ... nupipe train ...) until the
# run finishes, deciding from the run's own record of how it ended (run.dir/outcome.json), not
# from mpirun's exit code; after a failure it relaunches the same command (which resumes from
# the last committed checkpoint) up to N times, with a growing pause between attempts. Every
# restart is logged with its phases timed: failure detected, job torn down, checkpoint loaded,
# first step done.
#
# usage: scripts/train_with_restarts.sh [OPTIONS] -- COMMAND [ARGS...]
#   --max-restarts N  relaunches allowed after failures (default 3)
#   --backoff S       seconds before the first relaunch, doubled before each next one, at most
#                     60 (default 2; 0: relaunch at once)
#   --grace S         once the run has recorded its outcome, the seconds mpirun gets to end by
#                     itself before the job is torn down (a frozen rank keeps mpirun waiting
#                     when Open MPI is told not to abort; default 10)
#   --stall S         tear the job down when no rank's heartbeat (run.dir/heartbeat/) has
#                     changed for S seconds (every rank frozen: no survivor records the
#                     failure); 0: never (default 300)
#   --run-dir DIR     the run's run.dir (default: the last run.dir=DIR in the command, else the
#                     run's "run directory" log line)
#   --log FILE        also append the job's output and the restart log to FILE
#
# Decision (docs/sre-runbook.md#automatic-restarts), from this attempt's outcome.json:
#   finished                         -> exit 0
#   preempted (a stop signal, saved) -> exit 0, no relaunch (relaunch by hand to continue)
#   failed with 2, 3, 4 or 6         -> exit with that code (a relaunch cannot fix it)
#   failed otherwise (5, 1)          -> relaunch, or exit with the code when none are left
#   no outcome.json from the attempt (the job was killed before a rank could record it, or it
#   was refused before it held run.dir): the same table on mpirun's exit code.
# SIGINT, SIGTERM or SIGHUP on this script: the run is asked to stop (SIGUSR1 to mpirun, which
# forwards it to the ranks: they finish the step, save a checkpoint and exit), the script waits
# for that and exits 0 once the run recorded "preempted". A second signal tears the job down at
# once (exit 128 + signal). mpirun runs in a session of its own (setsid): a teardown sends
# SIGTERM to mpirun, then SIGKILL to every process of that session; a teardown for a frozen
# job SIGKILLs its ranks first, so that none is woken to train on.
set -uo pipefail

max_restarts=3 backoff=2 grace=10 stall=300 run_dir="" log_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --max-restarts) max_restarts=${2-}; shift 2 ;;
    --backoff) backoff=${2-}; shift 2 ;;
    --grace) grace=${2-}; shift 2 ;;
    --stall) stall=${2-}; shift 2 ;;
    --run-dir) run_dir=${2-}; shift 2 ;;
    --log) log_file=${2-}; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# //; s/^#$//'; exit 0 ;;
    *) echo "train_with_restarts: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "train_with_restarts: no command given (see --help)" >&2; exit 2; }
case "$max_restarts" in ''|*[!0-9]*) echo "train_with_restarts: --max-restarts needs a whole number" >&2; exit 2 ;; esac
for v in "$backoff" "$grace" "$stall"; do
  case "$v" in ''|*[!0-9.]*) echo "train_with_restarts: --backoff, --grace and --stall need seconds (e.g. 2 or 0.5)" >&2; exit 2 ;; esac
done
command -v setsid >/dev/null || { echo "train_with_restarts: setsid (util-linux) is needed" >&2; exit 2; }
if [ -z "$run_dir" ]; then
  for a in "$@"; do case "$a" in run.dir=*) run_dir=${a#run.dir=} ;; esac; done
fi

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
older_than() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN { exit !(b - a > s) }'; }
say() {
  echo "[restarts] $*"
  [ -z "$log_file" ] || echo "[restarts] $*" >>"$log_file"
}

# Echoes the job's output and records when the phases were seen: the first error line (failure
# detected), "checkpoint loaded", the first "step " line, and the run directory; "eof" at the
# end. Signals meant for the wrapper must not end it (mpirun would lose its output pipe).
reader() {
  trap '' INT TERM HUP
  local marks=$1 line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    [ -z "$log_file" ] || printf '%s\n' "$line" >>"$log_file"
    case "$line" in
      *"] run directory "*) grep -q '^rundir ' "$marks" || echo "rundir ${line#*] run directory }" >>"$marks" ;;
      *"checkpoint loaded"*) grep -q '^loaded ' "$marks" || echo "loaded $(now)" >>"$marks" ;;
      *"] step "*) grep -q '^step ' "$marks" || echo "step $(now)" >>"$marks" ;;
      *"error"*|*"exiting with code"*|*"killed"*|*"Killed"*|*"exited on signal"*)
        grep -q '^failed ' "$marks" || echo "failed $(now)" >>"$marks" ;;
    esac
  done
  echo "eof" >>"$marks"
}
mark() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$2"; }

outcome_file() {
  local d=${run_dir:-$(mark rundir "$marks")}
  [ -n "$d" ] && echo "$d/outcome.json"
}
fingerprint() { stat -c '%i %s %y' "$1" 2>/dev/null; }
# What changes while any rank's heartbeat moves (every file's size and modification time).
beats() {
  local d=${run_dir:-$(mark rundir "$marks")}
  [ -n "$d" ] && [ -d "$d/heartbeat" ] && stat -c '%n %s %y' "$d"/heartbeat/rank_* 2>/dev/null | cksum
}
# A field of outcome.json as nupipe writes it (one "key": value per line; strings unescaped
# only as far as the decision needs).
field() { sed -n "s/^  \"$1\": //p" "$2" | head -n 1 | sed 's/,$//; s/^"//; s/"$//'; }

# Tears the job down: SIGTERM to mpirun (it ends its ranks), then SIGKILL to its whole session
# (a SIGSTOP'd rank included) after 5 s. `teardown frozen` first SIGKILLs every process of the
# session but mpirun: a frozen rank has nothing left to save, and mpirun's own teardown would
# wake it (SIGCONT) and let it train on, and even commit checkpoints, after the failure the
# wrapper has already decided on.
teardown() {
  if [ "${1:-}" = frozen ]; then
    local p
    for p in $(pgrep -s "$mp"); do [ "$p" = "$mp" ] || kill -KILL "$p" 2>/dev/null; done
  fi
  kill -TERM "$mp" 2>/dev/null
  local t0
  t0=$(now)
  while kill -0 "$mp" 2>/dev/null && ! older_than "$t0" 5; do sleep 0.1; done
  pkill -KILL -s "$mp" 2>/dev/null
  kill -KILL "$mp" 2>/dev/null
}

stop_sig="" stop_count=0
on_signal() {
  stop_sig=$1
  stop_count=$((stop_count + 1))
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

marks=$(mktemp "${TMPDIR:-/tmp}/nupipe_restarts_XXXXXX")
trap 'rm -f "$marks"' EXIT
attempt=0 failures=0 prev_failed="" prev_exit="" pause=$backoff
while :; do
  attempt=$((attempt + 1))
  : >"$marks"
  of=$(outcome_file) before=""
  [ -z "$of" ] || before=$(fingerprint "$of")
  t_launch=$(now)
  say "attempt $attempt: $*"
  # Without job control a background child never leads a process group, so setsid makes it
  # a session leader in place: mpirun's pid is its session's id.
  setsid "$@" </dev/null > >(reader "$marks") 2>&1 &
  mp=$!
  forwarded=0 torn=0 t_outcome="" torn_status="" torn_code=""
  beat0=$(beats) beat_last=$beat0 t_beat="" t_poll=$(now)  # beat0: before this launch's
  while kill -0 "$mp" 2>/dev/null; do
    if [ -n "$stop_sig" ] && [ "$forwarded" = 0 ]; then
      forwarded=1
      say "SIG$stop_sig: asking the run to stop after its current step and save a checkpoint" \
        "(SIGUSR1 to mpirun, pid $mp); waiting for it (a second signal tears the job down now)"
      kill -USR1 "$mp" 2>/dev/null
    fi
    if [ "$stop_count" -ge 2 ] && [ "$torn" = 0 ]; then
      torn=1
      say "second SIG$stop_sig: tearing the job down now (checkpoint not awaited)"
      teardown
      break
    fi
    of=$(outcome_file)
    if [ -z "$t_outcome" ] && [ -n "$of" ] && [ -f "$of" ] && [ "$(fingerprint "$of")" != "$before" ]; then
      t_outcome=$(now)
    fi
    if [ -n "$t_outcome" ] && [ "$torn" = 0 ] && older_than "$t_outcome" "$grace"; then
      torn=1 torn_status=$(field status "$of") torn_code=$(field exit_code "$of")
      say "the run recorded its outcome ($(field status "$of"), exit $(field exit_code "$of")) but" \
        "mpirun is still running ${grace} s later (a rank is frozen?): tearing the job down" \
        "(mpirun pid $mp and its session)"
      teardown frozen
    fi
    if awk -v s="$stall" 'BEGIN { exit !(s > 0) }' && older_than "$t_poll" 1; then
      t_poll=$(now)
      b=$(beats)
      if [ "$b" != "$beat_last" ]; then  # moved (the first move: this launch's beats began)
        beat_last=$b
        [ "$b" = "$beat0" ] || t_beat=$(now)
      elif [ -n "$t_beat" ] && [ "$torn" = 0 ] && older_than "$t_beat" "$stall"; then
        torn=1 torn_status=failed torn_code=5
        say "no rank's heartbeat has moved for ${stall} s (every rank frozen?) and nothing is" \
          "recorded: tearing the job down (mpirun pid $mp and its session)"
        teardown frozen
      fi
    fi
    sleep 0.1 & wait $!
  done
  wait "$mp" 2>/dev/null
  rc=$?
  t_exit=$(now)
  echo "exit $t_exit $rc" >>"$marks"
  # Nothing of the job may outlive it (a frozen rank would keep holding run.dir).
  left=$(pgrep -s "$mp" | tr '\n' ' ')
  if [ -n "$left" ]; then
    say "processes of the job still running after mpirun ended (pids $left): killed"
    pkill -KILL -s "$mp" 2>/dev/null
  fi
  for _ in $(seq 50); do grep -q '^eof' "$marks" && break; sleep 0.1; done  # the last output

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

  # This attempt's outcome, when it recorded one.
  of=$(outcome_file) status="" code=$rc
  if [ -n "$of" ] && [ -f "$of" ] && [ "$(fingerprint "$of")" != "$before" ]; then
    status=$(field status "$of") code=$(field exit_code "$of")
    what="outcome $status (exit $code) at step $(field step "$of") of $(field steps "$of")"
    fr=$(field failed_rank "$of")
    [ -z "$fr" ] || [ "$fr" = null ] || what="$what, rank $fr failed first"
    what="$what; mpirun exited $rc"
  else
    what="no outcome.json from this attempt${of:+ ($of unchanged)}; mpirun exited $rc"
    if [ "$rc" = 0 ]; then status=finished; else status=failed; fi
  fi
  if [ -n "$torn_status" ]; then
    # Torn down by this script: what was recorded before, or the stall, decides (the ranks
    # that mpirun woke and stopped may have recorded something since).
    status=$torn_status code=$torn_code
    what="$what; torn down as $status (exit $code)"
  fi
  case "$status" in
    finished)
      say "attempt $attempt: $what: finished after $attempt attempt(s)"
      exit 0 ;;
    preempted)
      say "attempt $attempt: $what: stopped on request with a checkpoint saved; not relaunched" \
        "(relaunch the same command to continue)"
      exit 0 ;;
  esac
  if [ "$torn" = 1 ] && [ "$stop_count" -ge 2 ]; then
    say "attempt $attempt: $what: torn down on SIG$stop_sig; exiting"
    exit $((128 + $(kill -l "$stop_sig")))
  fi
  case "$code" in
    2|3|4|6)
      say "attempt $attempt: $what: exit $code is one a relaunch cannot fix (docs/sre-runbook.md); giving up"
      exit "$code" ;;
    0) code=1 ;;  # failed, but the code says otherwise: treat as a failure
  esac
  failed=$(mark failed "$marks")
  failed=${failed:-$t_exit}
  say "attempt $attempt: $what: failure detected at +$(since "$t_launch" "$failed") s" \
    "after launch, job torn down $(since "$failed" "$t_exit") s later"
  if [ -n "$stop_sig" ]; then
    say "SIG$stop_sig received: not relaunching; exiting with $code"
    exit "$code"
  fi
  failures=$((failures + 1))
  if [ "$failures" -gt "$max_restarts" ]; then
    say "no restarts left (--max-restarts $max_restarts); giving up with exit $code"
    exit "$code"
  fi
  prev_failed=$failed prev_exit=$t_exit
  if awk -v p="$pause" 'BEGIN { exit !(p > 0) }'; then
    say "relaunching in $pause s (restart $failures of at most $max_restarts)"
    sleep "$pause" & wait $!
    [ -z "$stop_sig" ] || { say "SIG$stop_sig received while waiting: not relaunching; exiting with $code"; exit "$code"; }
    pause=$(awk -v p="$pause" 'BEGIN { p *= 2; print (p > 60 ? 60 : p) }')
  fi
done
