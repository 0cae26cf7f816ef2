"""watchdog_cases.py: the watchdog's contract (parallel/session/watchdog.h) with real ranks under
mpirun, on both sides of the line, with runtime.peer_timeout_s = T = 2 s:
  stall_below:   one rank, then another, stopped (SIGSTOP) for 0.7 T and continued (SIGCONT):
                 no rank gives up, the run finishes every step and exits 0;
  stall_forever: one rank stopped for good, Open MPI told not to end the job: every other rank
                 exits with code 5 within T + 1 s (the stated margin) of the stop, and the
                 first report names the stopped rank.

usage: watchdog_cases.py CASE WORKDIR NUPIPE CONFIG MPIRUN [MPIRUN_FLAGS...]
Exit 0: pass; 1: fail; 2: unknown case.
"""
import os
import re
import signal
import subprocess
import sys
import time

from fault_common import (ENV, Fail, check, exit_code_wrapper, job_pids, metrics_lines, mpi_cmd,
                          run_case, sets, wait_for)
from fault_common import fresh as fresh_in

CASE, WORK, NUPIPE, CONFIG, MPIRUN = sys.argv[1:6]
MPIFLAGS = sys.argv[6:]
T = 2.0        # runtime.peer_timeout_s
MARGIN = 1.0   # Watchdog::kMarginS
SETTINGS = ["parallel.pipeline=2", "parallel.data=2", "parallel.stage_layers=[1,3]",
            "parallel.zero=1", "runtime.threads=1", "run.log_every=1", "checkpoint.every=0",
            "train.val_every=0", "runtime.peer_timeout_s=%g" % T]


def command(run_dir, steps, wrapper=None, flags=()):
    return mpi_cmd(MPIRUN, MPIFLAGS, 4, ([wrapper] if wrapper else []) +
                   [NUPIPE, "train", CONFIG] +
                   sets(SETTINGS + ["run.dir=" + run_dir, "train.steps=%d" % steps]), flags)


def fresh(name):
    return fresh_in(WORK, name)


def case_stall_below():
    d = fresh("stall_below")
    run_dir = d + "/run"
    steps = 60
    job = subprocess.Popen(command(run_dir, steps), env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    stalls = []
    try:
        wait_for(lambda: metrics_lines(run_dir) >= 5, 90, "training under way")
        pids = job_pids(run_dir)
        check(len(pids) == 4, "found ranks %s" % pids)
        for victim in (3, 1):  # a last stage, then a first stage of the other replica
            before = metrics_lines(run_dir)
            if job.poll() is not None:
                break  # said below
            os.kill(pids[victim], signal.SIGSTOP)
            time.sleep(0.2)
            frozen = metrics_lines(run_dir)
            time.sleep(0.7 * T - 0.2)
            during = metrics_lines(run_dir) - frozen
            os.kill(pids[victim], signal.SIGCONT)
            # The stall was real: the job made no step while the rank was stopped.
            check(during == 0, "%d steps logged while rank %d was stopped" % (during, victim))
            stalls.append((victim, before))
            time.sleep(0.5)
        if job.poll() is not None:
            out, _ = job.communicate()
            check(job.returncode == 0, "a stall of 0.7 x runtime.peer_timeout_s ended the job: "
                  "exit %d\n%s" % (job.returncode, out[-3000:]))
            raise Fail("the run finished before the stalls were over (raise train.steps)")
        out, _ = job.communicate(timeout=240)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    check(job.returncode == 0, "a stall of 0.7 x runtime.peer_timeout_s ended the job: exit "
                               "%d\n%s" % (job.returncode, out[-3000:]))
    check("no progress for" not in out, "a rank gave up:\n" + out[-3000:])
    n = metrics_lines(run_dir)
    check(n == steps, "metrics.jsonl has %d records of %d steps" % (n, steps))
    print("stalls (rank, at record) %s of %.1f s each (0.7 x peer_timeout_s = %g): no rank gave "
          "up; the run finished %d steps, exit 0" % (stalls, 0.7 * T, T, n))
    print("PASS: a peer that answers within runtime.peer_timeout_s is waited for")


def case_stall_forever():
    d = fresh("stall_forever")
    run_dir = d + "/run"
    codes = d + "/codes"
    # Each rank's exit code and time; the stopped rank's wrapper never gets to it. A wrapper
    # that exits after its child did not exit 5 sleeps on: mpirun must not be the one ending
    # the job here.
    wrapper = exit_code_wrapper(d + "/rank.sh", codes)
    job = subprocess.Popen(command(run_dir, 100000, wrapper,
                                   ["--mca", "orte_abort_on_non_zero_status", "0"]),
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    victim = 2
    try:
        wait_for(lambda: metrics_lines(run_dir) >= 5, 90, "training under way")
        pids = job_pids(run_dir)
        check(len(pids) == 4, "found ranks %s" % pids)
        t0 = time.time()
        os.kill(pids[victim], signal.SIGSTOP)
        survivors = sorted(r for r in pids if r != victim)

        def lines():
            try:
                return [l.split() for l in open(codes).read().splitlines()]
            except OSError:
                return []
        wait_for(lambda: len(lines()) >= len(survivors), T + MARGIN + 10,
                 "every other rank to exit")
        got = {int(r): (int(c), float(t) - t0) for r, c, t in lines()}
    finally:
        for p in job_pids(run_dir).values():
            os.kill(p, signal.SIGKILL)
        try:
            os.killpg(job.pid, signal.SIGKILL)  # mpirun, the wrappers and their sleeps
        except OSError:
            pass
        out, _ = job.communicate()
    check(sorted(got) == survivors, "exited: %s, want %s" % (sorted(got), survivors))
    check(all(c == 5 for c, _ in got.values()), "exit codes %s, want 5" % got)
    after = sorted(s for _, s in got.values())
    print("SIGSTOP of rank %d for good: ranks %s exited with code 5, %.2f .. %.2f s after it "
          "(runtime.peer_timeout_s = %g, bound T + %g s = %g s)" %
          (victim, survivors, after[0], after[-1], T, MARGIN, T + MARGIN))
    check(after[-1] <= T + MARGIN, "the last survivor exited %.2f s after the stop > T + "
                                   "margin = %g s" % (after[-1], T + MARGIN))
    for line in re.findall(r"rank \d+ on \S+: no progress for [^\n]*", out):
        print("  " + line)
    check(("not answering: rank %d" % victim) in out, "the stopped rank is not named:\n" +
          out[-3000:])
    # Nobody gave up on its own clock before T (the others follow the first one's mark).
    for waited in re.findall(r"no progress for ([0-9.]+) s in [^\n]*not answering", out):
        check(float(waited) >= T, "a rank gave up after %s s < T:\n%s" % (waited, out[-3000:]))
    print("PASS: a peer stopped for good ends every other rank with code 5 within "
          "runtime.peer_timeout_s + %g s" % MARGIN)


if __name__ == "__main__":
    sys.exit(run_case(globals(), CASE, WORK))
