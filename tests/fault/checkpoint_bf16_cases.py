"""checkpoint_bf16_cases.py: the checkpoint fault cases under runtime.precision = "bf16"
(run through checkpoint_cases.py): bitwise resume after SIGTERM and kill -9, the fp32 master
weights' and optimizer state's bitwise round trip (also resharded), and resuming across
precisions.
"""
from ckpt_harness import *  # noqa: F401,F403


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
    ref_losses = {r["step"] - 1: r["loss"] for r in records(ref)}  # by step index
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
        ref_losses = {r["step"] - 1: r["loss"] for r in records(ref)}  # by step index
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
