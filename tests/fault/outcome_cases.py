"""outcome_cases.py: a run's outcome (run.dir/outcome.json and the last log line), run.dir's
lock, train.log after kill -9, and scripts/train_with_restarts.sh deciding from the outcome
under Open MPI's two abort modes (the default, which ends the job when a rank exits non-zero,
and --mca orte_abort_on_non_zero_status 0, which leaves mpirun waiting on a frozen rank).

usage: outcome_cases.py CASE WORK NUPIPE CONFIG MPIRUN [MPIRUN_FLAGS...]
Cases: finished, give_up, sigint, sigterm, kill_default, kill_noabort, stop_default,
stop_noabort, stop_all, lock_live, lock_takeover, log_flush. Exit 0: pass; 1: fail; 77: skipped.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from fault_common import (ENV, REPO, Fail, check, job_pids, metrics_lines, mpi_cmd, run,
                          run_case, sets, wait_for)
from fault_common import fresh as fresh_in

CASE, WORK, NUPIPE, CONFIG, MPIRUN = sys.argv[1:6]
MPIFLAGS = sys.argv[6:]
WRAPPER = os.path.join(REPO, "scripts", "train_with_restarts.sh")
NOABORT = ["--mca", "orte_abort_on_non_zero_status", "0"]
PEER_TIMEOUT_S = 4
# Two ranks (pipeline 2), a small batch: a step takes some 50 ms, a checkpoint every 5 steps.
SETTINGS = ["parallel.pipeline=2", "parallel.data=1", "parallel.stage_layers=[1,3]",
            "train.global_batch=2", "train.micro_batch=1", "train.val_every=0",
            "checkpoint.every=5", "checkpoint.keep=2", "runtime.threads=1", "run.log_every=1",
            "runtime.peer_timeout_s=%d" % PEER_TIMEOUT_S]


def train_cmd(run_dir, steps, flags=(), np_=2, extra=()):
    return mpi_cmd(MPIRUN, MPIFLAGS, np_, [NUPIPE, "train", CONFIG] +
                   sets(SETTINGS + ["train.steps=%d" % steps, "run.dir=" + run_dir] +
                        list(extra)), flags)


def fresh(name):
    return fresh_in(WORK, name)


def start(cmd):
    # A session of its own, as a terminal's job would be: signals reach only what they target.
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)


def finish(proc, timeout):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise Fail("did not end within %d s:\n%s" % (timeout, out[-4000:]))
    return proc.returncode, out


def outcome(run_dir):
    with open(os.path.join(run_dir, "outcome.json")) as f:
        return json.load(f)


def steps_logged(run_dir):
    """metrics.jsonl's steps: each once, in order, none missing (resumes included)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        text = f.read()
    check(text.endswith("\n"), "metrics.jsonl ends in a torn line")
    steps = [json.loads(l)["step"] for l in text.splitlines()]
    check(steps == list(range(steps[0], steps[0] + len(steps))),
          "metrics.jsonl steps are not each once in order: %s" % steps)
    return steps


def last_log_line(run_dir):
    with open(os.path.join(run_dir, "train.log")) as f:
        text = f.read()
    check(text.endswith("\n"), "train.log ends in a torn line: %r" % text[-200:])
    return text.splitlines()[-1]


def check_finished(run_dir, steps, out):
    o = outcome(run_dir)
    check(o["status"] == "finished" and o["exit_code"] == 0 and o["step"] == steps,
          "outcome %s, want finished at step %d" % (o, steps))
    check(o["checkpoint"] == os.path.join(run_dir, "checkpoints", "step_%08d" % steps) and
          o["checkpoint_step"] == steps, "outcome's checkpoint: %s" % o)
    check(o["failed_rank"] is None and o["started_at"] <= o["ended_at"], "outcome: %s" % o)
    line = last_log_line(run_dir)
    check("outcome: finished (exit 0) at step %d of %d" % (steps, steps) in line and
          "recorded in " + os.path.join(run_dir, "outcome.json") in line,
          "train.log's last line: %r" % line)
    check(not os.path.exists(os.path.join(run_dir, "run.lock")), "run.lock left behind")
    return o


def wrapper_cmd(run_dir, steps, flags=(), grace=2, stall=300, extra=()):
    return [WRAPPER, "--max-restarts", "2", "--backoff", "0", "--grace", str(grace),
            "--stall", str(stall), "--"] + train_cmd(run_dir, steps, flags, extra=extra)


def case_finished():
    d = fresh("finished") + "/run"
    rc, out = finish(start(wrapper_cmd(d, 12)), 120)
    check(rc == 0, "wrapper exit %d:\n%s" % (rc, out[-4000:]))
    check_finished(d, 12, out)
    check("attempt 2" not in out and "outcome finished (exit 0) at step 12 of 12" in out,
          "the wrapper's decision:\n" + out[-3000:])
    print("PASS: finished: outcome.json and the last log line say so; one attempt")


def case_give_up():
    """A failure a relaunch cannot fix (a non-finite loss, exit 6): recorded with the step it
    reached, and the wrapper exits 6 without relaunching."""
    d = fresh("give_up") + "/run"
    rc, out = finish(start(wrapper_cmd(d, 50, extra=[
        "optim.lr=1e6", "optim.grad_clip=0", "optim.warmup_steps=0"])), 120)
    check(rc == 6, "wrapper exit %d, want 6:\n%s" % (rc, out[-4000:]))
    o = outcome(d)
    check(o["status"] == "failed" and o["exit_code"] == 6 and "loss is" in o["reason"],
          "outcome %s" % o)
    check("attempt 2" not in out and "a relaunch cannot fix" in out,
          "the wrapper relaunched or did not say why not:\n" + out[-3000:])
    line = last_log_line(d)
    check("outcome: failed (exit 6) at step %d" % o["step"] in line, "last line %r" % line)
    print("PASS: non-finite loss at step %d: outcome failed (exit 6), no relaunch, wrapper "
          "exit 6" % (o["step"] + 1))


def stop_wrapper(sig):
    """Ctrl-C (or SIGTERM) on the wrapper: the run saves and records "preempted"; the wrapper
    ends, exit 0, without relaunching."""
    d = fresh(signal.Signals(sig).name.lower()) + "/run"
    job = start(wrapper_cmd(d, 100000))
    wait_for(lambda: metrics_lines(d) >= 8, 60, "8 steps")
    t0 = time.time()
    os.kill(job.pid, sig)
    rc, out = finish(job, 60)
    check(rc == 0, "wrapper exit %d after the signal:\n%s" % (rc, out[-4000:]))
    o = outcome(d)
    check(o["status"] == "preempted" and o["exit_code"] == 0 and o["signal"] == "SIGUSR1",
          "outcome %s, want preempted by SIGUSR1" % o)
    check(o["checkpoint_step"] == o["step"] and os.path.isdir(o["checkpoint"]),
          "no checkpoint of the stop step: %s" % o)
    check("attempt 2" not in out and "stopped on request" in out,
          "the wrapper relaunched or did not say why it stopped:\n" + out[-3000:])
    line = last_log_line(d)
    check("outcome: preempted (exit 0) at step %d" % o["step"] in line, "last line %r" % line)
    check(not job_pids(d), "ranks left running")
    print("PASS: %s on the wrapper: saved at step %d, preempted, wrapper exit 0 in %.1f s"
          % (signal.Signals(sig).name, o["step"], time.time() - t0))


def case_sigint():
    stop_wrapper(signal.SIGINT)


def case_sigterm():
    stop_wrapper(signal.SIGTERM)


def fault_then_finish(name, sig, victim, flags, expect_teardown, stall=300):
    """`sig` to rank `victim` (None: every rank) mid-run under the wrapper: it relaunches
    (after tearing the job down when mpirun would wait forever) and the run finishes."""
    d = fresh(name) + "/run"
    steps = 40
    job = start(wrapper_cmd(d, steps, flags, stall=stall))
    wait_for(lambda: os.path.isdir(os.path.join(d, "checkpoints", "step_00000005")) and
             metrics_lines(d) >= 7, 60, "a checkpoint and 7 steps")
    pids = job_pids(d)
    check(len(pids) == 2, "expected 2 ranks, found %s" % pids)
    t0 = time.time()
    for rank in (sorted(pids) if victim is None else [victim]):
        os.kill(pids[rank], sig)
    rc, out = finish(job, 150)
    check(rc == 0, "wrapper exit %d:\n%s" % (rc, out[-5000:]))
    check("attempt 2:" in out and "attempt 3:" not in out,
          "want exactly one relaunch:\n" + out[-5000:])
    decided = [l for l in out.splitlines() if l.startswith("[restarts] attempt 1: ")][-1]
    torn = "tearing the job down" in out
    check(expect_teardown is None or torn == expect_teardown,
          "teardown %s, expected %s:\n%s" % (torn, expect_teardown, out[-5000:]))
    if victim is None:
        # No survivor to record it: the heartbeats told. (mpirun's own teardown wakes the
        # ranks with SIGCONT and stops them with SIGTERM: they may record "preempted" after
        # that; the wrapper relaunches all the same, as it tore the job down.)
        check("no rank's heartbeat has moved for %s s" % stall in out and
              "torn down as failed (exit 5)" in decided, "attempt 1: %s" % decided)
    elif sig == signal.SIGSTOP or "noabort" in name:
        # The survivors recorded the peer failure themselves: exit 5, naming the silent rank.
        check("outcome failed (exit 5)" in decided and
              "rank %d failed first" % victim in decided, "attempt 1: %s" % decided)
    check_finished(d, steps, out)
    steps_logged(d)
    check(not job_pids(d), "ranks left running")
    resumed = re.search(r"resuming from \S+step_(\d+)", out)
    check(resumed, "the relaunch did not resume from a checkpoint:\n" + out[-3000:])
    print("%s: %s" % (name, decided))
    phases = [l for l in out.splitlines() if "phases" in l]
    print(phases[0] if phases else "(no phases line)")
    print("PASS: %s of %s -> %srelaunch from step %s -> finished, in %.1f s" %
          (signal.Signals(sig).name, "every rank" if victim is None else "rank %d" % victim,
           "teardown, " if torn else "", resumed.group(1), time.time() - t0))


def case_kill_default():
    fault_then_finish("kill_default", signal.SIGKILL, 1, [], False)


def case_kill_noabort():
    fault_then_finish("kill_noabort", signal.SIGKILL, 1, NOABORT, None)


def case_stop_default():
    fault_then_finish("stop_default", signal.SIGSTOP, 1, [], False)


def case_stop_noabort():
    # Rank 0 frozen: it holds run.dir's lock; the survivor records the failure; the wrapper
    # tears the job down and the relaunch takes the lock over.
    fault_then_finish("stop_noabort", signal.SIGSTOP, 0, NOABORT, True)


def case_stop_all():
    # Every rank frozen: nothing is recorded and mpirun waits; the heartbeats stop.
    fault_then_finish("stop_all", signal.SIGSTOP, None, [], True, stall=3)


def case_lock_live():
    """A second launch into a live run: exit 2 on every rank, naming the holder, changing
    nothing in run.dir (the live run's metrics go on, whole, and nothing is renamed)."""
    d = fresh("lock_live") + "/run"
    a = start(train_cmd(d, 100000))
    try:
        wait_for(lambda: metrics_lines(d) >= 6, 60, "the live run's steps")
        with open(os.path.join(d, "run.lock")) as f:
            holder = json.load(f)
        before = sorted(os.listdir(d))
        # Every rank's own exit code, through a wrapper around each (Open MPI told not to
        # abort: by default it may kill rank 1 once rank 0 has exited 2, before it records).
        codes = os.path.join(os.path.dirname(d), "codes")
        rank_sh = os.path.join(os.path.dirname(d), "rank.sh")
        with open(rank_sh, "w") as f:
            f.write('#!/bin/sh\n"$@"\nrc=$?\necho "$OMPI_COMM_WORLD_RANK $rc" >> %s\nexit $rc\n'
                    % codes)
        os.chmod(rank_sh, 0o755)
        cmd = train_cmd(d, 100000, NOABORT)
        cmd.insert(cmd.index(NUPIPE), rank_sh)
        b = run(cmd, timeout=60)
        with open(codes) as f:
            got = sorted(tuple(map(int, l.split())) for l in f.read().splitlines())
        check(got == [(0, 2), (1, 2)], "rank exit codes %s, want 2 on both:\n%s" %
              (got, b.stdout))
        want = "is in use by a live run: rank 0 on host %s, pid %d, since %s" % (
            holder["host"], holder["pid"], holder["since"])
        check(want in b.stdout and "HINT: use another run.dir" in b.stdout,
              "the holder is not named:\n" + b.stdout)
        check(sorted(os.listdir(d)) == before, "run.dir changed: %s -> %s" %
              (before, sorted(os.listdir(d))))
        check(not os.path.exists(os.path.join(d, "outcome.json")), "outcome.json written")
        n = metrics_lines(d)
        wait_for(lambda: metrics_lines(d) >= n + 3, 30, "the live run to go on")
        check(a.poll() is None, "the live run ended")
    finally:
        for p in job_pids(d).values():
            os.kill(p, signal.SIGUSR1)
        rc, out = finish(a, 60)
    check(rc == 0 and outcome(d)["status"] == "preempted", "live run: exit %d, %s" %
          (rc, outcome(d)))
    steps_logged(d)
    print("PASS: second launch refused (exit 2) naming %s; the live run went on untouched" %
          want.split(": ", 1)[1])


def case_lock_takeover():
    """A lock whose holder was killed is taken over, and the log says whose it was."""
    d = fresh("lock_takeover") + "/run"
    a = start(train_cmd(d, 100000))
    wait_for(lambda: os.path.isdir(os.path.join(d, "checkpoints", "step_00000005")), 60,
             "a checkpoint")
    with open(os.path.join(d, "run.lock")) as f:
        holder = json.load(f)
    os.kill(job_pids(d)[0], signal.SIGKILL)
    rc, _ = finish(a, 60)
    check(rc != 0, "the killed job exited 0")
    check(os.path.exists(os.path.join(d, "run.lock")), "the killed holder's record is gone")
    p = run(train_cmd(d, 12), timeout=120)
    check(p.returncode == 0, "relaunch exit %d:\n%s" % (p.returncode, p.stdout[-3000:]))
    want = "run.dir lock: taken over from rank 0 on host %s, pid %d, since %s" % (
        holder["host"], holder["pid"], holder["since"])
    check(want in p.stdout and "that process is gone" in p.stdout,
          "no take-over line:\n" + p.stdout[-3000:])
    with open(os.path.join(d, "train.log")) as f:
        check(want in f.read(), "the take-over is not in train.log")
    check_finished(d, 12, p.stdout)
    print("PASS: " + want)


def case_log_flush():
    """kill -9 mid-run: train.log ends with a whole line, at the last step logged."""
    d = fresh("log_flush") + "/run"
    cmd = [NUPIPE, "train", CONFIG] + sets(SETTINGS + [
        "parallel.pipeline=1", "parallel.stage_layers=uniform", "train.steps=100000",
        "checkpoint.every=0", "run.dir=" + d])
    job = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    wait_for(lambda: metrics_lines(d) >= 40, 60, "40 steps")
    time.sleep(0.13)  # somewhere in a step
    job.kill()
    job.wait()
    n = len(steps_logged(d))
    with open(os.path.join(d, "train.log")) as f:
        text = f.read()
    check(text.endswith("\n"), "train.log ends mid-line: %r" % text[-200:])
    logged = [int(m) for m in re.findall(r"\] step +(\d+)/", text)]
    # The log line of a step follows its metrics record: at most one behind it.
    check(logged and n - 1 <= logged[-1] <= n + 1,
          "train.log's last step line is step %s, metrics.jsonl has %d records" %
          (logged[-1] if logged else None, n))
    print("PASS: after kill -9, train.log ends with the whole line of step %d (%d metrics "
          "records, %d bytes)" % (logged[-1], n, len(text)))


def main():
    if shutil.which(MPIRUN) is None and not os.path.exists(MPIRUN):
        print("SKIP: %s not found" % MPIRUN)
        return 77
    return run_case(globals(), CASE, WORK)


if __name__ == "__main__":
    sys.exit(main())
