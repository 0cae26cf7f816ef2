"""ckpt_harness.py: what the checkpoint fault cases share (checkpoint_cases.py,
checkpoint_bf16_cases.py, checkpoint_yuan_cases.py): the command line, the base layout and settings, running and
signalling training jobs, reading metrics and checkpoints, and bitwise comparisons (what every
fault script shares is in fault_common.py).
"""
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

try:
    import h5py
    import numpy as np
except ImportError:  # pragma: no cover - reported as a skip
    print("SKIP: h5py and numpy are needed (Debian: python3-h5py python3-numpy)")
    sys.exit(77)

from fault_common import (ENV, REPO, Fail, check, exit_code_wrapper, fresh, job_pids,  # noqa
                          metrics_lines, mpi_cmd, run, run_case, sets, wait_for)

CASE, WORK, NUPIPE, DUMP, CONFIG, MPIRUN = sys.argv[1:7]
MPIFLAGS = sys.argv[7:]

# The layout every case saves under: uneven pipeline x data, ZeRO-1, a chunked loss.
LAYOUT = ["parallel.pipeline=2", "parallel.data=2", "parallel.stage_layers=[1,3]",
          "parallel.zero=1"]
BASE = ["train.steps=24", "checkpoint.every=8", "checkpoint.keep=10", "runtime.threads=1",
        "run.log_every=1", "train.loss_chunk=48", "train.val_every=8", "train.val_batches=2",
        "runtime.peer_timeout_s=20"]
# The bf16 cases: a bf16 compute copy and activations, fp32 master weights in AdamW.
BF16 = ["runtime.precision=bf16"]
# The Yuan cases: the llama family's tiny config (beside CONFIG; the same 4 blocks, so the same
# layout) with Yuan 2.0's localized filtering attention.
LLAMA_CONFIG = os.path.join(os.path.dirname(CONFIG), "llama-tiny.toml")
YUAN = ["model.lfa=true", "model.n_kv_head=0"]


def config_of(extra):
    """The config a run trains: llama-tiny.toml for settings that name model.lfa, else CONFIG."""
    return LLAMA_CONFIG if any(s.startswith("model.lfa=") for s in extra) else CONFIG


def train_cmd(run_dir, extra=(), np_=4, layout=LAYOUT, flags=()):
    return mpi_cmd(MPIRUN, MPIFLAGS, np_, [NUPIPE, "train", config_of(extra)] +
                   sets(BASE + list(layout) + ["run.dir=" + run_dir] + list(extra)), flags)


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        text = f.read()
    check(text == "" or text.endswith("\n"), "metrics.jsonl ends in a torn line")
    return [json.loads(line) for line in text.splitlines()]


MATH_KEYS = ("step", "tokens_seen", "loss", "lr", "grad_norm", "val_loss")


def same_records(a_dir, b_dir):
    """The runs logged the same steps, once each, with bitwise equal numbers."""
    a, b = records(a_dir), records(b_dir)
    steps_b = [r["step"] for r in b]
    check(len(steps_b) == len(set(steps_b)), "duplicated step records: %s" % steps_b)
    check([r["step"] for r in a] == steps_b,
          "logged steps differ:\n  %s\n  %s" % ([r["step"] for r in a], steps_b))
    for ra, rb in zip(a, b):
        for k in MATH_KEYS:
            check(ra.get(k) == rb.get(k), "step %d: %s %r != %r" % (ra["step"], k, ra.get(k),
                                                                     rb.get(k)))
    return len(a)


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    return out


def ckpt(root, step):
    return os.path.join(root, "step_%08d" % step)


def same_tensors(a, b):
    da, db = datasets(os.path.join(a, "state.h5")), datasets(os.path.join(b, "state.h5"))
    check(sorted(da) == sorted(db), "different datasets in %s and %s" % (a, b))
    bad = [n for n in da if da[n].dtype != db[n].dtype or da[n].shape != db[n].shape or
           da[n].tobytes() != db[n].tobytes()]
    check(not bad, "%d datasets differ between %s and %s, e.g. %s" % (len(bad), a, b, bad[:3]))
    return len(da)


def verify(dir_):
    return run([NUPIPE, "ckpt", "verify", dir_])


def reference_run(extra=()):
    """The uninterrupted run every case compares with (24 steps, checkpoints 8, 16, 24),
    made once for all cases (ctest may run several at a time: a lock orders them). The bf16
    one (extra = BF16) is made by the first case that needs it."""
    name = "uninterrupted" + "".join("_" + s.split("=")[-1] for s in extra)
    ref = os.path.join(WORK, name)
    with open(os.path.join(WORK, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(WORK, name + ".done")):
            shutil.rmtree(ref, ignore_errors=True)
            run(train_cmd(ref, extra), expect=0)
            open(os.path.join(WORK, name + ".done"), "w").close()
    return ref


def start_job(run_dir, extra=(), flags=()):
    return subprocess.Popen(train_cmd(run_dir, extra, flags=flags), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def finish(proc, timeout=120):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise Fail("the job did not end within %d s:\n%s" % (timeout, out[-3000:]))
    return proc.returncode, out


def signal_trial(name, extra=()):
    """SIGTERM to every rank mid-run: each finishes its step, a checkpoint is saved, exit 0;
    the same command continues; losses and final tensors equal the uninterrupted run's."""
    ref = reference_run(extra)
    b = os.path.join(WORK, name)
    shutil.rmtree(b, ignore_errors=True)
    job = start_job(b, extra)
    wait_for(lambda: metrics_lines(b) >= 11, 60, "11 metrics lines")
    pids = job_pids(b)
    check(len(pids) == 4, "expected 4 ranks, found %s" % pids)
    for pid in pids.values():
        os.kill(pid, signal.SIGTERM)
    rc, out = finish(job)
    check(rc == 0, "a stop signal must end the run with exit 0, got %d:\n%s" % (rc, out[-3000:]))
    check("stop requested" in out and "on signal" in out, "no stop/save log line:\n" + out[-3000:])
    saved = [d for d in os.listdir(b + "/checkpoints") if not d.endswith(".tmp")]
    print("stopped with checkpoints %s" % sorted(saved))
    p = run(train_cmd(b, extra), expect=0)
    check("resuming from" in p.stdout, "the relaunch did not resume:\n" + p.stdout[-3000:])
    n = same_records(ref, b)
    t = same_tensors(ckpt(ref + "/checkpoints", 24), ckpt(b + "/checkpoints", 24))
    print("PASS: %d metrics records and %d datasets bitwise equal after stop + resume" % (n, t))


def kill_trial(name, during_write, seed, extra=(), after_lines=1, ref_extra=None):
    """ref_extra: the settings of the uninterrupted run compared with (default `extra`)."""
    rnd = random.Random(seed)
    ref = reference_run(extra if ref_extra is None else ref_extra)
    b = os.path.join(WORK, name)
    shutil.rmtree(b, ignore_errors=True)
    job = start_job(b, extra)
    root = b + "/checkpoints"
    if during_write:
        # The moment a save's temporary directory exists, some rank is writing.
        target = rnd.choice([8, 16])
        tmp = ckpt(root, target) + ".tmp"
        wait_for(lambda: os.path.exists(tmp), 60, tmp)
    else:
        wait_for(lambda: metrics_lines(b) >= after_lines, 60, "%d metrics lines" % after_lines)
        time.sleep(rnd.uniform(0.0, 0.8))
    pids = job_pids(b)
    victim = rnd.choice(sorted(pids))
    t_kill = time.time()
    writing = os.path.isdir(root) and any(d.endswith(".tmp") for d in os.listdir(root))
    os.kill(pids[victim], signal.SIGKILL)
    rc, out = finish(job)
    check(rc != 0, "killing rank %d did not fail the job" % victim)
    committed = sorted(d for d in os.listdir(root) if not d.endswith(".tmp")) \
        if os.path.isdir(root) else []
    usable = True
    if committed:
        usable = verify(os.path.join(root, committed[-1])).returncode == 0
    print("%s: killed rank %d %s; job ended (exit %d) in %.2f s; committed %s; newest usable: %s;"
          " a save in progress at the kill: %s"
          % (name, victim, "during the write of step %d" % target if during_write else
             "at a random moment", rc, time.time() - t_kill, committed, usable,
             "yes" if writing else "no"))
    check(usable, "the newest committed checkpoint does not verify")
    run(train_cmd(b, extra), expect=0)
    same_records(ref, b)
    same_tensors(ckpt(ref + "/checkpoints", 24), ckpt(root, 24))
    print("PASS: %s ended bitwise equal to the uninterrupted run" % name)


# The checkpoint is saved under 1F1B; two of the layouts resume it under a zero-bubble
# schedule (the format does not know the schedule; ZB-H1 trains bitwise as 1F1B does).
RESHARD = [  # name, ranks, pipeline, data, stage_layers, zero, schedule
    ("pp1_dp4_zero1", 4, 1, 4, '"uniform"', 1, "1f1b"),
    ("pp4_uniform_dp1_zero0_zbh2", 4, 4, 1, '"uniform"', 0, "zb-h2"),
    ("pp3_uneven_dp1", 3, 3, 1, "[2,1,1]", 0, "1f1b"),
    ("pp2_31_dp2_zero1_zbh1", 4, 2, 2, "[3,1]", 1, "zb-h1"),  # same data degree, other split
    ("pp4_dp1_zero1", 4, 4, 1, "[1,1,1,1]", 1, "1f1b"),
]


def resave(name, src, extra=(), np_=4, layout=LAYOUT):
    """train_and_dump --resave-at-start: loads checkpoint `src` (of step 8) under `layout` and
    `extra`, saves the loaded state at once (before any update) as OUT/ckpt/step_00000008,
    then trains steps 8-15. Returns OUT and the 8 losses (of steps 8-15)."""
    out = fresh(WORK, name)
    cmd = mpi_cmd(MPIRUN, MPIFLAGS, np_, [DUMP, "--config", config_of(extra), "--out", out,
                                          "--resave-at-start"] +
                  sets(BASE + ["train.steps=16", "checkpoint.resume=" + src,
                               "checkpoint.dir=" + out + "/ckpt"] + list(layout) + list(extra)))
    run(cmd, expect=0)
    with open(out + "/losses.txt") as f:
        losses = [float(x) for x in f.read().split()]
    check(len(losses) == 8, "%s trained %d steps, expected 8" % (name, len(losses)))
    return out, losses


def reshard_trial(prefix, layouts, extra=()):
    """The uninterrupted run's (of `extra`) step-8 checkpoint resaved under each of `layouts`
    (RESHARD's rows): every global tensor bitwise the original, the continued losses within
    1e-4 of the uninterrupted run's, bitwise where the data degree and ZeRO are kept. Returns
    the source checkpoint."""
    ref = reference_run(extra)
    src = ckpt(ref + "/checkpoints", 8)
    ref_losses = {r["step"] - 1: r["loss"] for r in records(ref)}  # by step index
    for name, np_, pp, dp, split, zero, schedule in layouts:
        out, losses = resave(prefix + name, src, extra, np_=np_, layout=[
            "parallel.pipeline=%d" % pp, "parallel.data=%d" % dp,
            "parallel.stage_layers=" + split, "parallel.zero=%d" % zero,
            "parallel.schedule=" + schedule])
        n = same_tensors(src, ckpt(out + "/ckpt", 8))
        worst = max(abs(l - ref_losses[8 + i]) / ref_losses[8 + i] for i, l in enumerate(losses))
        bitwise = all(l == ref_losses[8 + i] for i, l in enumerate(losses))
        print("%-24s %d datasets bitwise equal after resharding; steps 8-15: %s (worst rel %.1e)"
              % (name, n, "losses bitwise equal" if bitwise else "losses differ", worst))
        check(worst < 1e-4, "%s: continued losses drift from the uninterrupted run" % name)
        if dp == 2 and zero == 1:
            check(bitwise, "%s: same data degree and ZeRO, losses should be bitwise" % name)
    return src


BF16_RESAVE = [  # name, ranks, layout
    ("pp2_13_dp2_zero1", 4, LAYOUT),  # the writer's layout
    ("pp1_dp4_zero1", 4, ["parallel.pipeline=1", "parallel.data=4",
                          'parallel.stage_layers="uniform"', "parallel.zero=1"]),
]


def corrupt_copy(name):
    ref = reference_run()
    d = os.path.join(WORK, "corrupt_" + name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(ref, d)
    return d


def manifest_region(dir_, prefix):
    with open(os.path.join(dir_, "manifest.json")) as f:
        m = json.load(f)
    for r in m["files"][0]["regions"]:
        if r["what"].startswith(prefix):
            return r
    raise Fail("no region %s in the manifest" % prefix)


def resume_falls_back(d, bad_dir, needle, extra=()):
    """ckpt verify names the problem; strict stops (4) without touching anything; auto falls
    back to the previous checkpoint with a warning and completes the run bitwise."""
    v = verify(bad_dir)
    check(v.returncode == 4 and needle in v.stdout, "ckpt verify: exit %d, want 4 naming %r:\n%s"
          % (v.returncode, needle, v.stdout))
    before = open(d + "/metrics.jsonl").read()
    s = run(train_cmd(d, ["checkpoint.strict=true"] + list(extra)), expect=4)
    check(needle in s.stdout, "strict: the problem is not named:\n" + s.stdout[-2000:])
    check(open(d + "/metrics.jsonl").read() == before, "strict: metrics.jsonl changed")
    a = run(train_cmd(d, list(extra)), expect=0)
    check("falling back" in a.stdout and needle in a.stdout,
          "auto: no fallback warning naming %r:\n%s" % (needle, a.stdout[-3000:]))
    check("resuming from " + ckpt(d + "/checkpoints", 16) in a.stdout,
          "auto: did not resume from step 16:\n" + a.stdout[-3000:])
    check(os.path.isdir(bad_dir + ".damaged"), "the damaged checkpoint was not set aside")
    same_records(reference_run(), d)
    same_tensors(ckpt(reference_run() + "/checkpoints", 24), ckpt(d + "/checkpoints", 24))


def peer_failure(how):
    """With Open MPI told not to end the job when a rank fails, every other rank exits with
    code 5 within runtime.peer_timeout_s + 1 s, naming the silent peer."""
    d = fresh(WORK, "peer_" + how)
    codes = os.path.join(d, "codes")
    timeout_s = 5
    # Each rank's exit code and time; the victim's wrapper then sleeps on (mpirun must not be
    # the one ending the job).
    wrapper = exit_code_wrapper(os.path.join(d, "rank.sh"), codes)
    run_dir = d + "/run"
    cmd = mpi_cmd(MPIRUN, MPIFLAGS, 4,
                  [wrapper, NUPIPE, "train", CONFIG] +
                  sets(BASE + LAYOUT + ["run.dir=" + run_dir, "train.steps=100000",
                                        "runtime.peer_timeout_s=%d" % timeout_s,
                                        "checkpoint.every=50"]),
                  ["--mca", "orte_abort_on_non_zero_status", "0"])
    job = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: metrics_lines(run_dir) >= 5, 60, "training under way")
        pids = job_pids(run_dir)
        victim = 1 if how == "kill" else 3
        t0 = time.time()
        os.kill(pids[victim], signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        survivors = [r for r in pids if r != victim]

        def all_exited():
            try:
                lines = [l.split() for l in open(codes).read().splitlines()]
                return len([r for r, _, _ in lines if int(r) in survivors]) >= len(survivors)
            except OSError:
                return False
        wait_for(all_exited, timeout_s + 10, "every surviving rank to exit")
        lines = [l.split() for l in open(codes).read().splitlines() if int(l.split()[0]) != victim]
        last = max(float(t) for _, _, t in lines)
        got = {int(r): int(c) for r, c, _ in lines}
        check(all(got.get(r) == 5 for r in survivors), "exit codes %s, want 5 on %s" %
              (got, survivors))
        elapsed = last - t0
        print("%s of rank %d: ranks %s exited with code 5, the last %.2f s after it "
              "(runtime.peer_timeout_s = %d)" % ("kill -9" if how == "kill" else "SIGSTOP",
                                                 victim, survivors, elapsed, timeout_s))
        # The watchdog's bound (parallel/session/watchdog.h): T + 1 s.
        check(elapsed <= timeout_s + 1.0, "took %.2f s > peer_timeout_s + 1 s" % elapsed)
    finally:
        for p in job_pids(run_dir).values():
            os.kill(p, signal.SIGKILL)
        subprocess.run(["pkill", "-KILL", "-f", wrapper])
        job.kill()
        out, _ = job.communicate()
    check(("not answering: rank %d" % victim) in out,
          "the silent peer is not named:\n" + out[-3000:])
    print("PASS: bounded failure (%s)" % how)
