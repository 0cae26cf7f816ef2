"""checkpoint_yuan_cases.py: the checkpoint fault cases on the llama family with Yuan 2.0's
localized filtering attention (run through checkpoint_cases.py; configs/llama-tiny.toml with
model.lfa, the same uneven pipeline x data layout with ZeRO-1 and a chunked loss): kill -9 of a
random rank and relaunch, and the checkpoint resharded onto other layouts.
"""
from ckpt_harness import *  # noqa: F401,F403


def case_yuan_kill_random():
    """kill -9 of a random rank of a Yuan run after its first checkpoint, relaunched: ends
    bitwise equal to the uninterrupted Yuan run (metrics and the step-24 checkpoint)."""
    kill_trial("yuan_kill_random", False, int(os.environ.get("NUPIPE_TRIAL_SEED", "7")), YUAN,
               after_lines=10)


def case_yuan_reshard():
    """The Yuan run's step-8 checkpoint loaded under other layouts and saved again at once:
    every global tensor (the filter's included) bitwise the original; training continues
    within 1e-4 of the uninterrupted run, bitwise where the data degree and ZeRO are kept."""
    ref = reference_run(YUAN)
    src = ckpt(ref + "/checkpoints", 8)
    ref_losses = {r["step"] - 1: r["loss"] for r in records(ref)}  # by step index
    for name, np_, pp, dp, split, zero, schedule in (("pp1_dp4_zero1", 4, 1, 4, '"uniform"', 1,
                                                      "1f1b"),
                                                     ("pp2_31_dp2_zero1_zbh1", 4, 2, 2, "[3,1]", 1,
                                                      "zb-h1")):
        out, losses = resave("yuan_reshard_" + name, src, YUAN, np_=np_, layout=[
            "parallel.pipeline=%d" % pp, "parallel.data=%d" % dp,
            "parallel.stage_layers=" + split, "parallel.zero=%d" % zero,
            "parallel.schedule=" + schedule])
        n = same_tensors(src, ckpt(out + "/ckpt", 8))
        check(n > 0 and any("lfa" in t for t in datasets(os.path.join(src, "state.h5"))),
              "the checkpoint holds no filter tensors")
        worst = max(abs(l - ref_losses[8 + i]) / ref_losses[8 + i] for i, l in enumerate(losses))
        bitwise = all(l == ref_losses[8 + i] for i, l in enumerate(losses))
        print("%-24s %d datasets bitwise equal after resharding; steps 8-15: %s (worst rel %.1e)"
              % (name, n, "losses bitwise equal" if bitwise else "losses differ", worst))
        check(worst < 1e-4, "%s: continued losses drift from the uninterrupted run" % name)
        if dp == 2 and zero == 1:
            check(bitwise, "%s: same data degree and ZeRO, losses should be bitwise" % name)
    print("PASS: Yuan resharding")
