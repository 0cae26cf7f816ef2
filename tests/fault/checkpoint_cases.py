"""checkpoint_cases.py: end-to-end checks of checkpoints, resume and bounded failure, each
case a ctest (tests/fault/CMakeLists.txt): bitwise resume after a stop signal and after kill -9
(also during a checkpoint write), resharding onto other layouts, corruption, a full disk, a
model mismatch, h5py against `nupipe ckpt inspect`, peer timeouts and automatic restarts;
under runtime.precision = bf16 bitwise resume, the master weights' round trip, and resuming
across precisions.

usage: checkpoint_cases.py CASE WORKDIR NUPIPE TRAIN_AND_DUMP CONFIG MPIRUN [MPIRUN_FLAGS...]
Exit 0: pass; 1: fail; 77: skipped (what it needs is missing here).
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

CASE, WORK, NUPIPE, DUMP, CONFIG, MPIRUN = sys.argv[1:7]
MPIFLAGS = sys.argv[7:]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The layout every case saves under: uneven pipeline x data, ZeRO-1, a chunked loss.
LAYOUT = ["parallel.pipeline=2", "parallel.data=2", "parallel.stage_layers=[1,3]",
          "parallel.zero=1"]
BASE = ["train.steps=24", "checkpoint.every=8", "checkpoint.keep=10", "runtime.threads=1",
        "run.log_every=1", "train.loss_chunk=48", "train.val_every=8", "train.val_batches=2",
        "runtime.peer_timeout_s=20"]
# The bf16 cases: a bf16 compute copy and activations, fp32 master weights in AdamW.
BF16 = ["runtime.precision=bf16"]


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def sets(items):
    out = []
    for s in items:
        out += ["--set", s]
    return out


def train_cmd(run_dir, extra=(), np_=4, layout=LAYOUT, flags=()):
    return ([MPIRUN] + MPIFLAGS + list(flags) + ["-np", str(np_), NUPIPE, "train", CONFIG] +
            sets(BASE + list(layout) + ["run.dir=" + run_dir] + list(extra)))


def run(cmd, timeout=180, expect=None):
    p = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if expect is not None and p.returncode != expect:
        raise Fail("exit %d (expected %d) from:\n  %s\n---- output (tail) ----\n%s" %
                   (p.returncode, expect, " ".join(cmd), p.stdout[-4000:]))
    return p


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        text = f.read()
    check(text == "" or text.endswith("\n"), "metrics.jsonl ends in a torn line")
    return [json.loads(line) for line in text.splitlines()]


MATH_KEYS = ("step", "loss", "lr", "grad_norm", "val_loss")


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


def job_pids(run_dir):
    """{rank: pid} of this job's nupipe ranks (found by their run.dir on the command line)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            if os.path.basename(argv[0]) != b"nupipe" or ("run.dir=" + run_dir).encode() not in argv:
                continue
            with open("/proc/%s/stat" % pid) as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            rank = env.get(b"OMPI_COMM_WORLD_RANK") or env.get(b"PMIX_RANK")
            if rank is not None:
                out[int(rank)] = int(pid)
        except (OSError, ValueError):
            continue
    return out


def wait_for(pred, timeout, what):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise Fail("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.01)


def metrics_lines(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return f.read().count("\n")
    except OSError:
        return 0


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


# ---- cases ------------------------------------------------------------------------------

def case_reference():
    """The fixture: a fresh uninterrupted run for the other cases (ctest runs it first)."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    ref = reference_run()
    print("PASS: uninterrupted run in %s: %d records" % (ref, len(records(ref))))


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


def case_bitwise_signal():
    signal_trial("signal")


def kill_trial(name, during_write, seed, extra=(), after_lines=1):
    rnd = random.Random(seed)
    ref = reference_run(extra)
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
    os.kill(pids[victim], signal.SIGKILL)
    rc, out = finish(job)
    check(rc != 0, "killing rank %d did not fail the job" % victim)
    committed = sorted(d for d in os.listdir(root) if not d.endswith(".tmp")) \
        if os.path.isdir(root) else []
    usable = True
    if committed:
        usable = verify(os.path.join(root, committed[-1])).returncode == 0
    print("%s: killed rank %d %s; job ended (exit %d) in %.2f s; committed %s; newest usable: %s"
          % (name, victim, "during the write of step %d" % target if during_write else
             "at a random moment", rc, time.time() - t_kill, committed, usable))
    check(usable, "the newest committed checkpoint does not verify")
    p = run(train_cmd(b, extra), expect=0)
    same_records(ref, b)
    same_tensors(ckpt(ref + "/checkpoints", 24), ckpt(root, 24))
    print("PASS: %s ended bitwise equal to the uninterrupted run" % name)


def case_kill_random():
    kill_trial("kill_random", False, int(os.environ.get("NUPIPE_TRIAL_SEED", "7")))


def case_kill_during_write():
    kill_trial("kill_write", True, int(os.environ.get("NUPIPE_TRIAL_SEED", "11")))


RESHARD = [  # name, ranks, pipeline, data, stage_layers, zero
    ("pp1_dp4_zero1", 4, 1, 4, '"uniform"', 1),
    ("pp4_uniform_dp1_zero0", 4, 4, 1, '"uniform"', 0),
    ("pp3_uneven_dp1", 3, 3, 1, "[2,1,1]", 0),
    ("pp2_31_dp2_zero1", 4, 2, 2, "[3,1]", 1),  # same data degree, other split
    ("pp4_dp1_zero1", 4, 4, 1, "[1,1,1,1]", 1),
]


def resave(name, src, extra=(), np_=4, layout=LAYOUT):
    """train_and_dump --resave-at-start: loads checkpoint `src` (of step 8) under `layout` and
    `extra`, saves the loaded state at once (before any update) as OUT/ckpt/step_00000008,
    then trains steps 8-15. Returns OUT and the 8 losses (of steps 8-15)."""
    out = os.path.join(WORK, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cmd = ([MPIRUN] + MPIFLAGS + ["-np", str(np_), DUMP, "--config", CONFIG, "--out", out,
                                  "--resave-at-start"] +
           sets(BASE + ["train.steps=16", "checkpoint.resume=" + src,
                        "checkpoint.dir=" + out + "/ckpt"] + list(layout) + list(extra)))
    run(cmd, expect=0)
    with open(out + "/losses.txt") as f:
        losses = [float(x) for x in f.read().split()]
    check(len(losses) == 8, "%s trained %d steps, expected 8" % (name, len(losses)))
    return out, losses


def case_reshard():
    """A checkpoint of (pp 2 [1,3], dp 2, zero 1) loaded under other layouts: saved again at
    once, every global tensor equals the original bitwise; training continues."""
    ref = reference_run()
    src = ckpt(ref + "/checkpoints", 8)
    ref_losses = {r["step"]: r["loss"] for r in records(ref)}
    for name, np_, pp, dp, split, zero in RESHARD:
        out, losses = resave("reshard_" + name, src, np_=np_, layout=[
            "parallel.pipeline=%d" % pp, "parallel.data=%d" % dp,
            "parallel.stage_layers=" + split, "parallel.zero=%d" % zero])
        n = same_tensors(src, ckpt(out + "/ckpt", 8))
        worst = max(abs(l - ref_losses[8 + i]) / ref_losses[8 + i] for i, l in enumerate(losses))
        bitwise = all(l == ref_losses[8 + i] for i, l in enumerate(losses))
        print("%-24s %d datasets bitwise equal after resharding; steps 8-15: %s (worst rel %.1e)"
              % (name, n, "losses bitwise equal" if bitwise else "losses differ", worst))
        check(worst < 1e-4, "%s: continued losses drift from the uninterrupted run" % name)
        if dp == 2 and zero == 1:
            check(bitwise, "%s: same data degree and ZeRO, losses should be bitwise" % name)
    print("PASS: resharding")


def bf16_round(a):
    """float32 values rounded to bfloat16 (round to nearest even on the upper 16 bits), as
    float32: what the bf16 compute copy of a master weight holds (finite values only)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return (r & 0xFFFFFFFF).astype(np.uint32).view(np.float32).reshape(np.shape(a))


def master_weights(dir_):
    """The model/* datasets of a bf16 run's checkpoint are AdamW's fp32 master weights, not the
    rounded compute copy: float32, and (after some updates) most values not bf16-representable.
    Returns (values not representable, values)."""
    d = datasets(os.path.join(dir_, "state.h5"))
    model = {n: a for n, a in d.items() if n.startswith("model/")}
    check(model, "no model/* datasets in " + dir_)
    off = total = 0
    for n, a in sorted(model.items()):
        check(a.dtype == np.float32, "%s is %s, not float32" % (n, a.dtype))
        k = int(np.count_nonzero(bf16_round(a) != a))
        check(k > 0, "%s: every value is bf16-representable (a rounded copy?)" % n)
        off, total = off + k, total + a.size
    check(off > total // 2, "only %d of %d values are not bf16-representable" % (off, total))
    return off, total


def case_bf16_resume_bitwise():
    """Under runtime.precision = bf16: SIGTERM and relaunch, as bitwise_signal."""
    signal_trial("bf16_signal", BF16)


def case_bf16_kill_random():
    """Under bf16: kill -9 of a random rank after the first checkpoint (step 8), relaunched:
    ends bitwise equal to the uninterrupted bf16 run."""
    kill_trial("bf16_kill_random", False, int(os.environ.get("NUPIPE_TRIAL_SEED", "7")), BF16,
               after_lines=10)


BF16_RESAVE = [  # name, ranks, layout
    ("pp2_13_dp2_zero1", 4, LAYOUT),  # the writer's layout
    ("pp1_dp4_zero1", 4, ["parallel.pipeline=1", "parallel.data=4",
                          'parallel.stage_layers="uniform"', "parallel.zero=1"]),
]


def case_bf16_roundtrip():
    """A bf16 checkpoint holds real fp32 master weights; loaded under bf16 and saved again at
    once (same layout, and another ZeRO-1 sharding of the master) every dataset is bitwise the
    original; in the same layout training continues bitwise, and the final compute copy is
    the bf16 rounding of the uninterrupted run's master weights."""
    ref = reference_run(BF16)
    root = ref + "/checkpoints"
    for step in (8, 24):
        off, total = master_weights(ckpt(root, step))
        print("step %d: model/* float32, %d of %d values (%.1f%%) not bf16-representable"
              % (step, off, total, 100.0 * off / total))
    src = ckpt(root, 8)
    ref_losses = {r["step"]: r["loss"] for r in records(ref)}
    for name, np_, layout in BF16_RESAVE:
        out, losses = resave("bf16_roundtrip_" + name, src, BF16, np_=np_, layout=layout)
        n = same_tensors(src, ckpt(out + "/ckpt", 8))
        bitwise = all(l == ref_losses[8 + i] for i, l in enumerate(losses))
        worst = max(abs(l - ref_losses[8 + i]) / ref_losses[8 + i] for i, l in enumerate(losses))
        print("%-18s %d datasets bitwise equal after load + save; steps 8-15: %s (worst rel "
              "%.1e)" % (name, n, "losses bitwise equal" if bitwise else "losses differ", worst))
        if layout == LAYOUT:
            check(bitwise, "bf16 resume in the writer's layout: losses not bitwise")
            # The compute copy after step 15: the rounding of the master weights of step 16.
            master = datasets(os.path.join(ckpt(root, 16), "state.h5"))
            seen = 0
            for f in sorted(os.listdir(out)):
                if f.startswith("weights.rank") and f.endswith(".h5"):
                    for t, a in datasets(os.path.join(out, f)).items():
                        want = bf16_round(master["model/" + t])
                        check(a.tobytes() == want.tobytes(),
                              "%s: %s is not the bf16 rounding of the master" % (f, t))
                        seen += 1
            check(seen > 0, "no weights dumped in " + out)
            print("%-18s %d compute-copy tensors bitwise = bf16 rounding of step 16's master"
                  % ("", seen))
        else:
            check(worst < 1e-2, "%s: continued bf16 losses drift" % name)
    print("PASS: bf16 master weights and optimizer state round-trip bitwise")


# A checkpoint's first loss under the other precision: the same master weights, the loss
# computed with and without bf16 rounding of the compute copy and the activations. On this
# model (logits still small at step 8) that moves the loss by 1.4e-6 (bf16 -> fp32) and 4.4e-7
# (fp32 -> bf16) relative; the two uninterrupted runs' step-0 losses (same initial weights)
# differ by 1.6e-6. The bound leaves a factor of 60: any real loss of state (a tensor loaded
# wrong, a moment reset) moves it by far more. Later steps drift apart as the updates differ
# (3e-4 by step 15), bounded loosely.
CROSS_LOSS_RTOL = 1e-4
CROSS_DRIFT_RTOL = 1e-2


def case_cross_precision():
    """A bf16 checkpoint resumes under fp32 and an fp32 one under bf16: the state saved at once
    is bitwise the checkpoint (master weights and moments pass through), and the first loss
    is the writer's loss of that step up to bf16 rounding."""
    for writer, reader in (("bf16", "fp32"), ("fp32", "bf16")):
        ref = reference_run(BF16 if writer == "bf16" else ())
        src = ckpt(ref + "/checkpoints", 8)
        ref_losses = {r["step"]: r["loss"] for r in records(ref)}
        out, losses = resave("cross_%s_to_%s" % (writer, reader), src,
                             ["runtime.precision=" + reader])
        saved = ckpt(out + "/ckpt", 8)
        da = datasets(os.path.join(src, "state.h5"))
        db = datasets(os.path.join(saved, "state.h5"))
        model = sorted(n for n in da if n.startswith("model/"))
        check(sorted(da) == sorted(db), "different datasets in %s and %s" % (src, saved))
        bad = [n for n in model if db[n].dtype != np.float32 or da[n].tobytes() != db[n].tobytes()]
        check(not bad, "%s -> %s: model/* not passed through bitwise, e.g. %s" % (writer, reader,
                                                                               bad[:3]))
        n = same_tensors(src, saved)
        rels = [abs(l - ref_losses[8 + i]) / ref_losses[8 + i] for i, l in enumerate(losses)]
        print("%s -> %s: %d datasets (%d model/*) bitwise after load + save; loss at step 8 "
              "%.9f vs the writer's %.9f (rel %.2e); steps 8-15 worst rel %.2e"
              % (writer, reader, n, len(model), losses[0], ref_losses[8], rels[0], max(rels)))
        check(rels[0] < CROSS_LOSS_RTOL, "%s -> %s: first loss off by %.2e relative (bound %.0e)"
              % (writer, reader, rels[0], CROSS_LOSS_RTOL))
        check(max(rels) < CROSS_DRIFT_RTOL, "%s -> %s: steps 8-15 drift by %.2e relative"
              % (writer, reader, max(rels)))
    print("PASS: checkpoints resume across precisions")


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


def case_corrupt_truncated():
    d = corrupt_copy("truncated")
    bad = ckpt(d + "/checkpoints", 24)
    with open(bad + "/state.h5", "r+b") as f:
        f.truncate(os.path.getsize(bad + "/state.h5") // 2)
    resume_falls_back(d, bad, "truncated")
    print("PASS: truncated file detected before parsing; fallback and strict")


def case_corrupt_flipped():
    d = corrupt_copy("flipped")
    bad = ckpt(d + "/checkpoints", 24)
    r = manifest_region(bad, "optim/exp_avg/blocks.1.mlp.fc.weight")
    with open(bad + "/state.h5", "r+b") as f:
        f.seek(r["offset"] + r["bytes"] // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    resume_falls_back(d, bad, "optim/exp_avg/blocks.1.mlp.fc.weight")
    print("PASS: flipped byte named by dataset; fallback and strict")


def case_corrupt_no_manifest():
    d = corrupt_copy("no_manifest")
    bad = ckpt(d + "/checkpoints", 24)
    os.remove(bad + "/manifest.json")
    resume_falls_back(d, bad, "never committed")
    print("PASS: a checkpoint without manifest is never loaded")


def case_stray_tmp():
    """A save that never committed (step_N.tmp, garbage inside) is never loaded, and removed."""
    d = corrupt_copy("stray_tmp")
    stray = ckpt(d + "/checkpoints", 32) + ".tmp"
    os.makedirs(stray)
    with open(stray + "/state.h5", "wb") as f:
        f.write(os.urandom(4096))
    p = run(train_cmd(d, ["train.steps=28", "checkpoint.every=4"]), expect=0)
    check("resuming from " + ckpt(d + "/checkpoints", 24) in p.stdout, p.stdout[-3000:])
    check("removed " + stray in p.stdout, "no warning about the leftover:\n" + p.stdout[-3000:])
    check(not os.path.exists(stray), "the leftover is still there")
    print("PASS: uncommitted leftover ignored and removed")


def case_rollback():
    """Resuming the same run.dir from an older checkpoint (before a loss spike, say): the newer
    ones are set aside as .abandoned (not deleted, never loaded, not in retention's way), and
    the run continues from there exactly."""
    d = corrupt_copy("rollback")
    root = d + "/checkpoints"
    p = run(train_cmd(d, ["checkpoint.resume=" + ckpt(root, 8)]), expect=0)
    for step in (16, 24):
        check(os.path.isdir(ckpt(root, step) + ".abandoned"), "step %d not set aside:\n%s" %
              (step, p.stdout[-3000:]))
    same_records(reference_run(), d)
    same_tensors(ckpt(reference_run() + "/checkpoints", 24), ckpt(root, 24))
    print("PASS: rollback sets newer checkpoints aside and continues bitwise")


def case_no_checkpoint_rerun():
    """A run that never saved, launched again in its run.dir: its metrics are kept (renamed),
    the new run starts at step 0."""
    d = os.path.join(WORK, "rerun")
    shutil.rmtree(d, ignore_errors=True)
    run(train_cmd(d, ["checkpoint.every=0", "train.steps=4"]), expect=0)
    first = open(d + "/metrics.jsonl").read()
    p = run(train_cmd(d, ["checkpoint.every=0", "train.steps=4"]), expect=0)
    check(open(d + "/metrics.jsonl.1").read() == first, "the first run's metrics were not kept")
    check(open(d + "/metrics.jsonl").read().count("\n") == 4, "the new run's metrics")
    check("kept as" in p.stdout, "no warning:\n" + p.stdout[-2000:])
    print("PASS: metrics of a run without checkpoints are kept as metrics.jsonl.1")


def case_write_error():
    """A full filesystem: the save fails, the previous checkpoint stays intact, nothing is
    marked committed; exit 4 by default, training goes on with on_write_error = continue."""
    mnt = os.path.join(WORK, "small_fs")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
    # One checkpoint of this model is 2.7 MB: room for one, not for the next beside it.
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                      stderr=subprocess.DEVNULL).returncode != 0:
        print("SKIP: cannot mount a small tmpfs here (needs root)")
        sys.exit(77)
    try:
        for policy, rc in (("stop", 4), ("continue", 0)):
            d = os.path.join(WORK, "write_error_" + policy)
            shutil.rmtree(d, ignore_errors=True)
            for e in os.listdir(mnt):
                shutil.rmtree(os.path.join(mnt, e))
            p = run(train_cmd(d, ["train.steps=12", "checkpoint.every=4", "checkpoint.keep=1",
                                  "checkpoint.dir=" + mnt, "checkpoint.on_write_error=" + policy]),
                    expect=rc)
            check("No space left on device" in p.stdout or "ENOSPC" in p.stdout or
                  "space" in p.stdout, "the failure is not explained:\n" + p.stdout[-3000:])
            left = sorted(os.listdir(mnt))
            check(left == ["step_00000004"], "%s: checkpoint.dir holds %s" % (policy, left))
            check(verify(os.path.join(mnt, left[0])).returncode == 0,
                  "%s: the previous checkpoint is damaged" % policy)
            steps = [r["step"] for r in records(d)]
            check(steps[-1] == (7 if policy == "stop" else 11),
                  "%s: training ended at step %d" % (policy, steps[-1]))
            print("%s: exit %d, %s intact, training stopped after step %d" %
                  (policy, p.returncode, left[0], steps[-1]))
    finally:
        subprocess.run(["umount", mnt])
    print("PASS: write failures keep the previous checkpoint")


def case_model_mismatch():
    ref = reference_run()
    d = os.path.join(WORK, "mismatch")
    shutil.rmtree(d, ignore_errors=True)
    p = run(train_cmd(d, ["checkpoint.resume=" + ckpt(ref + "/checkpoints", 8),
                          "model.n_layer=6", "model.d_model=32", "parallel.stage_layers=[2,4]"]),
            expect=4)
    for needle in ("model.n_layer: checkpoint 4, config 6", "model.d_model: checkpoint 64, config 32"):
        check(needle in p.stdout, "missing %r in:\n%s" % (needle, p.stdout[-2000:]))
    check(not os.path.exists(d + "/metrics.jsonl"), "run.dir was written")
    print("PASS: model mismatch refused (exit 4) naming every key")


def case_h5py_inspect():
    """A checkpoint written by 4 ranks, read with h5py, is what `nupipe ckpt inspect` says."""
    ref = reference_run()
    d = ckpt(ref + "/checkpoints", 24)
    p = run([NUPIPE, "ckpt", "inspect", "--json", d], expect=0)
    info = json.loads(p.stdout)
    with h5py.File(d + "/state.h5", "r") as f:
        shapes = {}
        f.visititems(lambda n, o: shapes.__setitem__(n, list(o.shape))
                     if isinstance(o, h5py.Dataset) else None)
        check(info["tensors"] == shapes, "tensor lists differ")
        check(info["step"] == int(f.attrs["step"]) == 24, "step")
        check(info["layout"]["pipeline"] == int(f.attrs["layout.pipeline"]) == 2, "layout")
        check(info["config"] == f.attrs["config"], "config")
        for k in ("n_layer", "d_model", "n_head", "vocab_size", "seq_len"):
            check(info["model"][k] == int(f.attrs["model." + k]), "model." + k)
        check(all(f[n].dtype == np.float32 for n in shapes), "a dataset is not float32")
    model = [n for n in shapes if n.startswith("model/")]
    print("PASS: %d datasets (%d model tensors), step, layout and config agree" %
          (len(shapes), len(model)))


def peer_failure(how):
    """With Open MPI told not to end the job when a rank fails, every other rank exits with
    code 5 within runtime.peer_timeout_s, naming the silent peer."""
    d = os.path.join(WORK, "peer_" + how)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    codes = os.path.join(d, "codes")
    timeout_s = 5
    wrapper = os.path.join(d, "rank.sh")
    # Each rank's exit code and time. The victim's wrapper then stays (sleeps): a wrapper that
    # exits after its child was killed makes mpirun end the job ("exited improperly"), which
    # is exactly what this case must do without.
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\n"$@"\nrc=$?\necho "$OMPI_COMM_WORLD_RANK $rc $(date +%%s.%%N)" >> %s\n'
                '[ $rc -ne 5 ] && exec sleep 600\nexit $rc\n' % codes)
    os.chmod(wrapper, 0o755)
    run_dir = d + "/run"
    cmd = ([MPIRUN] + MPIFLAGS + ["--mca", "orte_abort_on_non_zero_status", "0", "-np", "4",
                                  wrapper, NUPIPE, "train", CONFIG] +
           sets(BASE + LAYOUT + ["run.dir=" + run_dir, "train.steps=100000",
                                 "runtime.peer_timeout_s=%d" % timeout_s, "checkpoint.every=50"]))
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
        check(elapsed <= timeout_s + 0.5, "took %.2f s > peer_timeout_s" % elapsed)
    finally:
        for p in job_pids(run_dir).values():
            os.kill(p, signal.SIGKILL)
        subprocess.run(["pkill", "-KILL", "-f", wrapper])
        job.kill()
        out, _ = job.communicate()
    check(("not answering: rank %d" % victim) in out,
          "the silent peer is not named:\n" + out[-3000:])
    print("PASS: bounded failure (%s)" % how)


def case_peer_kill():
    peer_failure("kill")


def case_peer_stop():
    peer_failure("stop")


def case_restarts():
    """scripts/train_with_restarts.sh relaunches after kill -9 and the run ends bitwise equal to
    the uninterrupted one, every phase of the restart timed."""
    ref = reference_run()
    b = os.path.join(WORK, "restarts")
    shutil.rmtree(b, ignore_errors=True)
    cmd = [os.path.join(REPO, "scripts/train_with_restarts.sh"), "--max-restarts", "2", "--"] + \
        train_cmd(b)
    job = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, stdin=subprocess.DEVNULL)
    wait_for(lambda: metrics_lines(b) >= 12, 60, "step 12")
    os.kill(job_pids(b)[2], signal.SIGKILL)
    rc, out = finish(job, 180)
    check(rc == 0, "exit %d:\n%s" % (rc, out[-3000:]))
    phases = [l for l in out.splitlines() if "phases" in l]
    check(phases and "checkpoint loaded +" in phases[0] and "first step done +" in phases[0],
          "no timed restart line:\n" + out[-3000:])
    print(phases[0])
    same_records(ref, b)
    same_tensors(ckpt(ref + "/checkpoints", 24), ckpt(b + "/checkpoints", 24))
    print("PASS: automatic restart, bitwise")


def main():
    os.makedirs(WORK, exist_ok=True)
    fn = globals().get("case_" + CASE)
    if fn is None:
        print("unknown case %s; cases: %s" % (CASE, ", ".join(
            n[5:] for n in sorted(globals()) if n.startswith("case_"))))
        return 2
    try:
        fn()
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
