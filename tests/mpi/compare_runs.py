#!/usr/bin/python3
"""compare_runs.py: checks that training runs on different pipeline/data layouts and schedules
produced the same per-step losses and the same final weights as a reference run.

    compare_runs.py REF_DIR RUN_DIR [RUN_DIR ...] [--loss-rtol 1e-5] [--weight-rtol 1e-5]

The key third of each attention qkv bias is compared with an absolute bound instead: adding a
constant to every key of a row leaves the softmax unchanged, so its gradient is zero in exact
arithmetic and only rounding noise in practice, which AdamW normalises into O(lr) steps of
random sign. Its values (~1e-6 after a few steps) differ between summation orders by design;
the q and v thirds, which carry signal, are held to the relative bound like every tensor.

Each directory holds losses.txt and weights.rank*.h5 (one per stage of replica 0), written by
train_and_dump. Tensors are matched by global name, whichever stage held them.
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np


def load(run_dir):
    losses = np.loadtxt(os.path.join(run_dir, "losses.txt"), ndmin=1)
    weights = {}
    files = sorted(glob.glob(os.path.join(run_dir, "weights.rank*.h5")))
    if not files:
        raise SystemExit(f"compare_runs: no weights.rank*.h5 in {run_dir}")
    for path in files:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    weights.setdefault(name, []).append(np.array(obj, dtype=np.float64))
            f.visititems(visit)
    return losses, weights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--loss-rtol", type=float, default=1e-5)
    ap.add_argument("--weight-rtol", type=float, default=1e-5)
    ap.add_argument("--key-bias-atol", type=float, default=1e-4)
    args = ap.parse_args()
    ref_losses, ref_w = load(args.ref)
    ok = True
    for run in args.runs:
        losses, w = load(run)
        if losses.shape != ref_losses.shape:
            print(f"FAIL {run}: {losses.size} losses, reference has {ref_losses.size}")
            ok = False
            continue
        loss_err = np.max(np.abs(losses - ref_losses) / np.abs(ref_losses))
        worst, worst_name = 0.0, ""
        if set(w) != set(ref_w):
            print(f"FAIL {run}: tensors differ: missing {sorted(set(ref_w) - set(w))}, "
                  f"extra {sorted(set(w) - set(ref_w))}")
            ok = False
            continue
        key_bias_diff = 0.0
        for name, copies in w.items():
            ref = ref_w[name][0]
            for c in copies:  # a tied table held by two stages must match in both
                if name.endswith("attn.qkv.bias"):
                    third = ref.size // 3
                    key = slice(third, 2 * third)
                    key_bias_diff = max(key_bias_diff, float(np.max(np.abs(c[key] - ref[key]))))
                    c, ref_c = np.delete(c, np.s_[key]), np.delete(ref, np.s_[key])
                else:
                    ref_c = ref
                err = np.linalg.norm(c - ref_c) / max(np.linalg.norm(ref_c), 1e-30)
                if err > worst:
                    worst, worst_name = err, name
        good = (loss_err <= args.loss_rtol and worst <= args.weight_rtol
                and key_bias_diff <= args.key_bias_atol)
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {os.path.basename(run):<28} losses max rel err "
              f"{loss_err:.2e}  weights worst rel err {worst:.2e} ({worst_name}); key bias max abs diff {key_bias_diff:.1e}")
    print(f"reference {os.path.basename(args.ref)} losses: "
          + " ".join(f"{l:.6f}" for l in ref_losses))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
