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
    """The Yuan run's step-8 checkpoint loaded under other layouts and saved again at once, as
    case_reshard: every global tensor (the filter's included) bitwise the original."""
    src = reshard_trial("yuan_reshard_", [l for l in RESHARD
                                          if l[0] in ("pp1_dp4_zero1", "pp2_31_dp2_zero1_zbh1")],
                        YUAN)
    check(any("lfa" in t for t in datasets(os.path.join(src, "state.h5"))),
          "the checkpoint holds no filter tensors")
    print("PASS: Yuan resharding")
