"""sanitize_cycle.py: the nupipe executable built with AddressSanitizer + UBSan (+ LeakSanitizer)
through a real 4-rank cycle: save (in the background, checkpoint.async), kill -9 one rank,
resume, reshard onto another layout and schedule, verify and inspect. Every process's output is
searched for sanitizer reports; any report fails the case, as does a wrong exit code or a resumed
run that is not bitwise the uninterrupted one.

usage: sanitize_cycle.py WORKDIR NUPIPE CONFIG SUPPRESSIONS MPIRUN [MPIRUN_FLAGS...]
Exit 0: pass; 1: fail.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fault"))
from fault_common import Fail, check, job_pids, mpi_cmd, run, sets, wait_for  # noqa: E402
from sanitizer_env import sanitizer_env, sanitizer_reports  # noqa: E402

WORK, NUPIPE, CONFIG, SUPP, MPIRUN = sys.argv[1:6]
MPIFLAGS = sys.argv[6:]
ENV = sanitizer_env(SUPP)
# Open MPI's launcher takes these from its own environment; -x hands them to every rank.
XFLAGS = [a for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                      "OMPI_MCA_mca_base_component_disable_dlclose") for a in ("-x", k)]

# The fault tests' layout (uneven pipeline x data, ZeRO-1, chunked loss) at 8 steps.
LAYOUT = ["parallel.pipeline=2", "parallel.data=2", "parallel.stage_layers=[1,3]",
          "parallel.zero=1"]
BASE = ["train.steps=8", "checkpoint.every=4", "checkpoint.keep=4", "checkpoint.async=true",
        "runtime.threads=1", "run.log_every=1", "train.loss_chunk=48", "train.val_every=4",
        "train.val_batches=1", "data.synthetic.train_tokens=65536",
        "data.synthetic.val_tokens=8192", "runtime.peer_timeout_s=20"]
OUTPUTS = []  # (what, output) of every process run, searched for reports at the end


def train_cmd(run_dir, layout=LAYOUT, extra=()):
    return mpi_cmd(MPIRUN, MPIFLAGS + XFLAGS, 4, [NUPIPE, "train", CONFIG] +
                   sets(BASE + list(layout) + ["run.dir=" + run_dir] + list(extra)))


def sanitized_run(what, cmd, expect):
    p = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace", timeout=240, stdin=subprocess.DEVNULL)
    OUTPUTS.append((what, p.stdout))
    check(p.returncode == expect, "%s: exit %d, want %d:\n%s" % (what, p.returncode, expect,
                                                                  p.stdout[-4000:]))
    print("%-44s exit %d" % (what, p.returncode))
    return p.stdout


def records(run_dir):
    import json
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f.read().splitlines()]


def losses(run_dir):
    return {r["step"]: r["loss"] for r in records(run_dir)}


def committed(root):
    return sorted(d for d in os.listdir(root) if d.startswith("step_") and "." not in d) \
        if os.path.isdir(root) else []


def main():
    os.makedirs(WORK, exist_ok=True)
    ref, cut, moved = (os.path.join(WORK, n) for n in ("uninterrupted", "killed", "resharded"))
    for d in (ref, cut, moved):
        subprocess.run(["rm", "-rf", d])
    t0 = time.time()

    sanitized_run("uninterrupted (pp 2 [1,3] x dp 2, async)", train_cmd(ref), 0)

    # kill -9 one rank once the step-4 checkpoint is committed and training has gone on.
    job = subprocess.Popen(train_cmd(cut), env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace",
                           stdin=subprocess.DEVNULL)
    wait_for(lambda: "step_00000004" in committed(cut + "/checkpoints"), 120,
             "the step-4 checkpoint")
    wait_for(lambda: len(records(cut)) >= 5, 60, "step 5")
    pids = job_pids(cut)
    check(len(pids) == 4, "expected 4 ranks, found %s" % pids)
    os.kill(pids[1], signal.SIGKILL)
    out, _ = job.communicate(timeout=120)
    OUTPUTS.append(("killed run", out))
    check(job.returncode != 0, "killing rank 1 did not fail the job")
    print("%-44s exit %d" % ("kill -9 of rank 1 after step 5", job.returncode))

    out = sanitized_run("resume on the same layout", train_cmd(cut), 0)
    check("resuming from" in out, "the relaunch did not resume:\n" + out[-3000:])
    check(losses(cut) == losses(ref), "resumed losses differ from the uninterrupted run's:\n"
          "  %s\n  %s" % (losses(ref), losses(cut)))

    # The step-4 checkpoint resharded: pipeline 4, one block each, zero-bubble, no ZeRO.
    src = os.path.join(ref, "checkpoints", "step_00000004")
    sanitized_run("reshard onto pp 4 x dp 1, zb-h2", train_cmd(moved, [
        "parallel.pipeline=4", "parallel.data=1", 'parallel.stage_layers="uniform"',
        "parallel.zero=0", "parallel.schedule=zb-h2"], ["checkpoint.resume=" + src]), 0)
    a, b = losses(ref), losses(moved)
    worst = max(abs(b[s] - a[s]) / a[s] for s in b)
    check(sorted(b) == [5, 6, 7, 8] and worst < 1e-4,
          "resharded run: steps %s, worst relative loss difference %.1e" % (sorted(b), worst))

    final = os.path.join(cut, "checkpoints", "step_00000008")
    sanitized_run("ckpt verify", [NUPIPE, "ckpt", "verify", final], 0)
    sanitized_run("ckpt inspect --json", [NUPIPE, "ckpt", "inspect", "--json", final], 0)

    reports = [(what, r) for what, text in OUTPUTS for r in sanitizer_reports(text)]
    check(not reports, "sanitizer reports:\n" + "\n\n".join("%s:\n%s" % x for x in reports[:3]))
    print("PASS: save / kill -9 / resume (bitwise) / reshard (worst rel %.1e) / verify under "
          "ASan+UBSan+LSan, %d processes' output without a report, in %.0f s"
          % (worst, len(OUTPUTS), time.time() - t0))


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL: %s" % e)
        sys.exit(1)
