"""tsan_threads.py: the nupipe executable built with ThreadSanitizer (CMAKE_BUILD_TYPE
ThreadSanitize; scripts/tsan.sh builds and runs it) over the threads it starts beside the
training thread: the watchdog and the heartbeat writer on every rank, and the background
checkpoint save (checkpoint.async, its own communicator, MPI_THREAD_MULTIPLE). Three runs:
saves in the background to the end; a stop signal while a save is in flight (the signal waits
for it, then the final step is saved); a rank stopped for good (the others' watchdogs end them
with exit 5). Any ThreadSanitizer report fails the case.

usage: tsan_threads.py WORKDIR NUPIPE CONFIG SUPPRESSIONS MPIRUN [MPIRUN_FLAGS...]
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fault"))
from fault_common import ENV, Fail, check, job_pids, metrics_lines, mpi_cmd, sets, wait_for  # noqa

WORK, NUPIPE, CONFIG, SUPP, MPIRUN = sys.argv[1:6]
MPIFLAGS = sys.argv[6:]
# ignore_noninstrumented_modules: the calls that Open MPI's components (loaded and unloaded at
# run time, so out of reach of tsan.supp's called_from_lib) make to intercepted functions are
# not tracked; among them, a progress thread signalling the wait object on another thread's
# stack.
TENV = dict(ENV, TSAN_OPTIONS="suppressions=%s:second_deadlock_stack=1:history_size=7:"
            "ignore_noninstrumented_modules=1" % SUPP,
            OMP_NUM_THREADS="1")
XFLAGS = ["-x", "TSAN_OPTIONS", "-x", "OMP_NUM_THREADS"]
BASE = ["parallel.pipeline=2", "parallel.data=1", "parallel.stage_layers=[2,2]",
        "checkpoint.async=true", "checkpoint.every=2", "checkpoint.keep=3", "runtime.threads=1",
        "run.log_every=1", "train.val_every=4", "train.val_batches=1",
        "data.synthetic.train_tokens=65536", "data.synthetic.val_tokens=8192"]
REPORT = re.compile(r"^WARNING: ThreadSanitizer: .*$", re.M)


def start(run_dir, extra):
    cmd = mpi_cmd(MPIRUN, MPIFLAGS + XFLAGS, 2, [NUPIPE, "train", CONFIG] +
                  sets(BASE + ["run.dir=" + run_dir] + extra))
    return subprocess.Popen(cmd, env=TENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", stdin=subprocess.DEVNULL)


def finish(what, job, expect, t0):
    out, _ = job.communicate(timeout=300)
    reports = REPORT.findall(out)
    print("%-52s exit %d in %5.1f s, %d ThreadSanitizer reports" % (
        what, job.returncode, time.time() - t0, len(reports)))
    check(not reports, "%s: ThreadSanitizer reports:\n%s" % (what, out[out.find(reports[0]):]
                                                             [:6000] if reports else ""))
    check(job.returncode in expect, "%s: exit %d, want %s:\n%s" % (what, job.returncode, expect,
                                                                   out[-3000:]))
    return out


def main():
    os.makedirs(WORK, exist_ok=True)
    subprocess.run(["rm", "-rf", WORK + "/async", WORK + "/signal", WORK + "/stopped"])
    t0 = time.time()
    finish("8 steps, a background save every 2", start(WORK + "/async", ["train.steps=8"]), {0},
           t0)

    t0 = time.time()
    job = start(WORK + "/signal", ["train.steps=400"])
    tmp = WORK + "/signal/checkpoints/step_00000004.tmp"
    wait_for(lambda: os.path.exists(tmp), 120, tmp)  # a save is in flight
    for pid in job_pids(WORK + "/signal").values():
        os.kill(pid, signal.SIGTERM)
    out = finish("SIGTERM during a background save", job, {0}, t0)
    check("stop requested" in out, "no stop line:\n" + out[-3000:])

    t0 = time.time()
    job = start(WORK + "/stopped", ["train.steps=100000", "runtime.peer_timeout_s=3",
                                    "checkpoint.every=50"])
    wait_for(lambda: metrics_lines(WORK + "/stopped") >= 3, 120, "training under way")
    pids = job_pids(WORK + "/stopped")
    os.kill(pids[1], signal.SIGSTOP)
    try:
        finish("rank 1 stopped: rank 0's watchdog ends it", job, {5}, t0)
    finally:
        for p in pids.values():
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    print("PASS: no ThreadSanitizer report over the watchdog, heartbeat and background-save "
          "threads")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL: %s" % e)
        sys.exit(1)
