"""checkpoint_cases.py: end-to-end checks of checkpoints, resume and bounded failure, each
case a ctest (tests/fault/CMakeLists.txt): bitwise resume after a stop signal and after kill -9
(also during a checkpoint write), resharding onto other layouts, corruption, a full disk, a
model mismatch, h5py against `nupipe ckpt inspect`, peer timeouts and automatic restarts;
and (checkpoint_bf16_cases.py) under runtime.precision = bf16 bitwise resume, the master
weights' round trip, and resuming across precisions; and (checkpoint_yuan_cases.py) kill -9
and resharding under Yuan 2.0's localized filtering. What they share is in ckpt_harness.py.

usage: checkpoint_cases.py CASE WORKDIR NUPIPE TRAIN_AND_DUMP CONFIG MPIRUN [MPIRUN_FLAGS...]
Exit 0: pass; 1: fail; 77: skipped (what it needs is missing here).
"""
import contextlib

from ckpt_harness import *  # noqa: F401,F403
from checkpoint_bf16_cases import *  # noqa: F401,F403
from checkpoint_yuan_cases import *  # noqa: F401,F403


# ---- cases ------------------------------------------------------------------------------

def case_reference():
    """The fixture: a fresh uninterrupted run for the other cases (ctest runs it first)."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    ref = reference_run()
    print("PASS: uninterrupted run in %s: %d records" % (ref, len(records(ref))))


def case_bitwise_signal():
    signal_trial("signal")


def case_kill_random():
    kill_trial("kill_random", False, int(os.environ.get("NUPIPE_TRIAL_SEED", "7")))


def case_kill_during_write():
    kill_trial("kill_write", True, int(os.environ.get("NUPIPE_TRIAL_SEED", "11")))


def case_reshard():
    """A checkpoint of (pp 2 [1,3], dp 2, zero 1, 1F1B) loaded under other layouts and
    schedules: saved again at once, every global tensor equals the original bitwise; training
    continues."""
    reshard_trial("reshard_", RESHARD)
    print("PASS: resharding")


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


def case_corrupt_resealed():
    """The global heap (where HDF5 keeps the string attributes) of the newest checkpoint given
    an object size far past its end, and the manifest's checksum rewritten to match: the bytes
    verify, and the HDF5 library would copy past its buffer. ckpt verify and the run end with
    exit 4 naming the file; nothing is changed (the parse cannot be resumed, so no fallback)."""
    import xxhash  # python3-xxhash (scripts/setup.sh)
    d = corrupt_copy("resealed")
    bad = ckpt(d + "/checkpoints", 24)
    with open(os.path.join(bad, "manifest.json")) as f:
        m = json.load(f)
    with open(bad + "/state.h5", "rb") as f:
        state = bytearray(f.read())
    heap = [r for r in m["files"][0]["regions"] if r["what"] == "hdf5 metadata" and
            state[r["offset"]:r["offset"] + 4] == b"GCOL"]
    check(heap, "no global heap collection among the metadata regions")
    o = heap[0]["offset"]
    state[o + 24:o + 32] = (1 << 40).to_bytes(8, "little")  # the first object's size
    heap[0]["xxh3"] = "%016x" % xxhash.xxh3_64_intdigest(bytes(state[o:o + heap[0]["bytes"]]))
    with open(bad + "/state.h5", "wb") as f:
        f.write(state)
    with open(os.path.join(bad, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)
    needle = "the HDF5 library crashed reading " + bad + "/state.h5"
    v = verify(bad)
    check(v.returncode == 4 and needle in v.stdout and "HINT:" in v.stdout,
          "ckpt verify: exit %d, want 4 naming the file:\n%s" % (v.returncode, v.stdout))
    before = open(d + "/metrics.jsonl").read()
    digest = sorted((p, os.path.getsize(os.path.join(r, p))) for r, _, fs in os.walk(d)
                    for p in fs if "checkpoints" in r)
    t = run(train_cmd(d), expect=4)
    check(needle in t.stdout, "the run does not name the file:\n" + t.stdout[-3000:])
    check(open(d + "/metrics.jsonl").read() == before, "metrics.jsonl changed")
    check(digest == sorted((p, os.path.getsize(os.path.join(r, p))) for r, _, fs in os.walk(d)
                           for p in fs if "checkpoints" in r), "the checkpoints changed")
    print("PASS: a resealed global heap that crashes HDF5's parser: exit 4 naming the file, "
          "from ckpt verify and from the 4-rank run; nothing changed")


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


@contextlib.contextmanager
def small_tmpfs(name):
    """A 4 MB tmpfs under WORK, unmounted afterwards (exit 77, skipped, where mounting is not
    allowed). One checkpoint of this model is 2.7 MB: room for one, not for the next beside it."""
    mnt = os.path.join(WORK, name)
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                      stderr=subprocess.DEVNULL).returncode != 0:
        print("SKIP: cannot mount a small tmpfs here (needs root)")
        sys.exit(77)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt])


def case_write_error():
    """A full filesystem: the save fails, the previous checkpoint stays intact, nothing is
    marked committed; exit 4 by default, training goes on with on_write_error = continue."""
    with small_tmpfs("small_fs") as mnt:
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
            check(steps[-1] == (8 if policy == "stop" else 12),
                  "%s: training ended at step %d" % (policy, steps[-1]))
            print("%s: exit %d, %s intact, training stopped after step %d" %
                  (policy, p.returncode, left[0], steps[-1]))
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


# ---- checkpoint.async: the same guarantees with the write in the background ---------------

ASYNC = ["checkpoint.async=true"]


def case_async_signal():
    """SIGTERM during an async run: the save in flight commits, the final step is saved, exit
    0; the relaunch (async too) ends with the synchronous uninterrupted run's records and
    tensors, bit for bit, and its step-8/16 checkpoints hold the same bytes as the sync ones."""
    ref = reference_run()
    b = os.path.join(WORK, "async_signal")
    shutil.rmtree(b, ignore_errors=True)
    job = start_job(b, ASYNC)
    wait_for(lambda: metrics_lines(b) >= 11, 60, "11 metrics lines")
    for pid in job_pids(b).values():
        os.kill(pid, signal.SIGTERM)
    rc, out = finish(job)
    check(rc == 0, "a stop signal must end the run with exit 0, got %d:\n%s" % (rc, out[-3000:]))
    check("stop requested" in out and "checkpoint (on signal)" in out and
          "in the background" in out, "no stop / background save lines:\n" + out[-3000:])
    check("MPI thread level: MPI_THREAD_MULTIPLE" in out and "nupipe-ckpt" in out,
          "the thread level and the save's thread are not logged:\n" + out[-3000:])
    saved = sorted(d for d in os.listdir(b + "/checkpoints"))
    check(not [d for d in saved if d.endswith(".tmp")], "a save left uncommitted: %s" % saved)
    p = run(train_cmd(b, ASYNC), expect=0)
    check("resuming from" in p.stdout, "the relaunch did not resume:\n" + p.stdout[-3000:])
    n = same_records(ref, b)
    t = sum(same_tensors(ckpt(ref + "/checkpoints", s_), ckpt(b + "/checkpoints", s_))
            for s_ in (8, 16, 24))
    with open(os.path.join(b, "memory.json")) as f:
        host = [r["host_tags"]["checkpoint_snapshot"] for r in json.load(f)["ranks"]]
    check(all(h["predicted"] == h["measured_peak"] > 0 for h in host),
          "the snapshot's memory: %s" % host)
    print("stopped with %s; snapshot bytes per rank (predicted = measured): %s"
          % (saved, [h["measured_peak"] for h in host]))
    print("PASS: async: %d records and %d datasets (steps 8, 16, 24) bitwise equal to the "
          "synchronous run after stop + resume" % (n, t))


def case_async_kill_random():
    """kill -9 of a random rank at a random moment of an async run (scripts/bench/
    kill_resume.sh with ASYNC=1; not a ctest): resume bitwise equal to the synchronous run."""
    kill_trial("async_kill_random", False, int(os.environ.get("NUPIPE_TRIAL_SEED", "7")),
               ASYNC, ref_extra=())


def case_async_kill_during_write():
    """kill -9 of a random rank while a background save is being written (its step_N.tmp
    exists while training goes on): the newest committed checkpoint verifies, the relaunch
    ends bitwise equal to the synchronous uninterrupted run."""
    rnd = random.Random(int(os.environ.get("NUPIPE_TRIAL_SEED", "13")))
    ref = reference_run()
    b = os.path.join(WORK, "async_kill_write")
    shutil.rmtree(b, ignore_errors=True)
    root = b + "/checkpoints"
    job = start_job(b, ASYNC)
    target = rnd.choice([8, 16])
    tmp = ckpt(root, target) + ".tmp"
    wait_for(lambda: os.path.exists(tmp), 60, tmp)
    pids = job_pids(b)
    victim = rnd.choice(sorted(pids))
    during = os.path.exists(tmp) and not os.path.exists(ckpt(root, target))
    at_step = metrics_lines(b)
    os.kill(pids[victim], signal.SIGKILL)
    rc, out = finish(job)
    check(rc != 0, "killing rank %d did not fail the job" % victim)
    committed = sorted(d for d in os.listdir(root) if not d.endswith(".tmp"))
    usable = not committed or verify(os.path.join(root, committed[-1])).returncode == 0
    print("async_kill_write: killed rank %d %s of step %d (training had logged %d steps); "
          "committed %s; newest usable: %s; a save in progress at the kill: %s"
          % (victim, "during the background write" if during else "after the background write",
             target, at_step, committed, usable, "yes" if during else "no"))
    check(usable, "the newest committed checkpoint does not verify")
    run(train_cmd(b, ASYNC), expect=0)
    same_records(ref, b)
    same_tensors(ckpt(ref + "/checkpoints", 24), ckpt(root, 24))
    print("PASS: async_kill_write ended bitwise equal to the synchronous uninterrupted run")


def case_async_write_error():
    """A full filesystem during a background write: every rank exits 4 (none hangs), at the
    step boundary where the verdict is taken; the previous checkpoint is intact and nothing
    else is left in checkpoint.dir."""
    with small_tmpfs("small_fs_async") as mnt:
        d = fresh(WORK, "async_write_error")
        codes = os.path.join(d, "codes")
        wrapper = os.path.join(d, "rank.sh")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\n"$@"\nrc=$?\necho "$OMPI_COMM_WORLD_RANK $rc" >> %s\nexit $rc\n'
                    % codes)
        os.chmod(wrapper, 0o755)
        cmd = mpi_cmd(MPIRUN, MPIFLAGS, 4, [wrapper, NUPIPE, "train", CONFIG] + sets(
            BASE + LAYOUT + ASYNC + ["run.dir=" + d + "/run", "train.steps=12",
                                     "checkpoint.every=4", "checkpoint.keep=1",
                                     "checkpoint.dir=" + mnt]),
            ["--mca", "orte_abort_on_non_zero_status", "0"])
        t0 = time.time()
        p = run(cmd)  # mpirun's own code is not the ranks' when it does not end the job
        got = sorted(tuple(map(int, l.split())) for l in open(codes).read().splitlines())
        check(got == [(0, 4), (1, 4), (2, 4), (3, 4)], "exit codes per rank: %s:\n%s"
              % (got, p.stdout[-3000:]))
        check("No space left on device" in p.stdout or "disk is not full" in p.stdout,
              "the failure is not explained:\n" + p.stdout[-3000:])
        left = sorted(os.listdir(mnt))
        check(left == ["step_00000004"], "checkpoint.dir holds %s" % left)
        check(verify(os.path.join(mnt, left[0])).returncode == 0,
              "the previous checkpoint is damaged")
        # The verdict comes at the first step boundary after the background write failed, or,
        # when training outruns the write (a loaded host), at the end, where the final save
        # waits for the one in flight: both before any later save is started.
        steps = [r["step"] for r in records(d + "/run")]
        check(8 <= steps[-1] <= 12, "training ended at step %d" % steps[-1])
        print("async write error: every rank exit 4 in %.1f s; %s intact; the step-8 save's "
              "failure taken at the boundary after step %d" % (time.time() - t0, left[0],
                                                              steps[-1]))
    print("PASS: a failed background write stops every rank with exit 4, the previous "
          "checkpoint intact")


if __name__ == "__main__":
    sys.exit(run_case(globals(), CASE, WORK))
