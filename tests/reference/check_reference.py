#!/usr/bin/python3
"""check_reference.py: checks a file written by `dump_reference` against PyTorch. It rebuilds the
model from the file's attributes and parameters (torch_gpt.py; torch_llama.py when the file's
family is "llama", torch_yuan.py when it also has lfa = 1; float64), runs forward and backward
on the file's batch, and compares nupipe's loss and every parameter's gradient.

    /usr/bin/python3 tests/reference/check_reference.py FILE.h5 [--loss-tol 1e-5] [--grad-tol 1e-4]

Passes when |loss - loss_torch| / |loss_torch| < loss-tol and, for EVERY parameter,
||g_nupipe - g_torch|| / ||g_torch|| < grad-tol. A missing, misshapen, extra or non-finite
gradient fails. Exit status: 0 pass, 1 fail, 2 malformed or unreadable file.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_gpt  # noqa: E402
import torch_llama  # noqa: E402
import torch_yuan  # noqa: E402
from torch_gpt import MalformedFile  # noqa: E402


def rel_err(mine: np.ndarray, ref: np.ndarray) -> float:
    """||mine - ref|| / ||ref||; the absolute ||mine - ref|| when ref is all zeros."""
    diff = np.linalg.norm((mine.astype(np.float64) - ref).ravel())
    norm = np.linalg.norm(ref.ravel())
    return float(diff / norm) if norm > 0 else float(diff)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="HDF5 file written by dump_reference")
    ap.add_argument("--loss-tol", type=float, default=1e-5, help="relative loss tolerance")
    ap.add_argument("--grad-tol", type=float, default=1e-4, help="relative gradient tolerance")
    args = ap.parse_args(argv)

    torch.set_grad_enabled(True)
    try:
        with h5py.File(args.file, "r") as f:
            family = f.attrs.get("family", "gpt2")
            family = family.decode() if isinstance(family, bytes) else str(family)
            ref = torch_llama if family == "llama" else torch_gpt
            if family == "llama" and int(f.attrs.get("lfa", 0)):
                ref, family = torch_yuan, "llama with lfa"
            cfg, loss_ref, grads_ref = ref.reference_loss_and_grads(f, torch.float64)
            _require_attr(f, "loss")
            loss_mine = float(f.attrs["loss"])
            expected = ref.param_shapes(cfg)
            stored = set(f["grad"].keys()) if isinstance(f.get("grad"), h5py.Group) else set()
            grads_mine = {n: f[f"grad/{n}"][()] for n in expected if f"grad/{n}" in f}
            extra = sorted(stored - set(expected))
    except MalformedFile as e:
        print(f"MALFORMED {args.file}: {e}", file=sys.stderr)
        return 2
    except (OSError, KeyError) as e:
        print(f"MALFORMED {args.file}: cannot read it: {e}", file=sys.stderr)
        return 2

    failures = []
    print(f"reference check of {args.file} ({family}): " +
          " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={int(v)}"
                   for k, v in vars(cfg).items()))
    loss_err = abs(loss_mine - loss_ref) / abs(loss_ref) if loss_ref != 0 else abs(loss_mine)
    loss_ok = math.isfinite(loss_mine) and loss_err < args.loss_tol
    print(f"loss: nupipe {loss_mine:.10g}  torch(float64) {loss_ref:.10g}  rel err {loss_err:.3e}"
          f"  {'ok' if loss_ok else 'FAIL'}")
    if not loss_ok:
        failures.append("loss")

    width = max(len(n) for n in expected) + 2
    print(f"{'gradient':<{width}}{'shape':<16}{'rel err':>12}  status")
    worst = 0.0
    for name, shape in expected.items():
        shape_s = "x".join(str(d) for d in shape)
        if name not in grads_mine:
            status, err_s = "FAIL (missing)", "-"
        else:
            g = grads_mine[name]
            if tuple(g.shape) != shape:
                status, err_s = f"FAIL (shape {'x'.join(str(d) for d in g.shape)})", "-"
            elif not np.all(np.isfinite(g)):
                status, err_s = "FAIL (non-finite)", "-"
            else:
                err = rel_err(g, grads_ref[name].numpy())
                worst = max(worst, err)
                err_s = f"{err:.3e}"
                status = "ok" if err < args.grad_tol else "FAIL"
        if status != "ok":
            failures.append(name)
        print(f"{name:<{width}}{shape_s:<16}{err_s:>12}  {status}")
    for name in extra:
        failures.append(name)
        print(f"{name:<{width}}{'':<16}{'-':>12}  FAIL (not a parameter of this model)")

    checks = 1 + len(expected) + len(extra)
    if failures:
        print(f"FAIL: {len(failures)} of {checks} checks failed ({', '.join(failures[:5])}"
              f"{', ...' if len(failures) > 5 else ''}); loss tol {args.loss_tol:g}, "
              f"grad tol {args.grad_tol:g}")
        return 1
    print(f"PASS: loss and {len(expected)} gradients within tolerance (worst gradient rel err "
          f"{worst:.3e} < {args.grad_tol:g}; loss rel err {loss_err:.3e} < {args.loss_tol:g})")
    return 0


def _require_attr(f, key):
    if key not in f.attrs:
        raise MalformedFile(f"root attribute '{key}' is missing")


if __name__ == "__main__":
    sys.exit(main())
