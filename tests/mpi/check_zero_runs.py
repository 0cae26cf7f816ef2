#!/usr/bin/python3
"""check_zero_runs.py: checks ZeRO-1's arithmetic on the stage.rankR.txt files train_and_dump
wrote for a parallel.zero = 0 run and a parallel.zero = 1 run of the same layout.

    check_zero_runs.py ZERO0_DIR ZERO1_DIR --steps N

For every rank (matched by world rank, so by stage and replica):
  - the stage's parameter count does not divide the data degree (the test must exercise padding);
  - zero = 0 holds no padding; zero = 1 pads to the next multiple of dp (padding < dp);
  - optimizer bytes: zero = 0 holds m and v for every parameter (8 bytes each); zero = 1 holds
    1/dp of that plus its share of the padding: dp * bytes1 == bytes0 + 8 * padding;
  - data-group bytes sent over the run = steps * 2 Psi (dp - 1) / dp, Psi the bytes of the flat
    gradient buffer (padded for zero = 1; for zero = 0 the all-reduce's accounting rounds down).
Prints one row per rank and PASS or FAIL.
"""
import argparse
import glob
import os
import sys


def load(run_dir):
    ranks = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "stage.rank*.txt"))):
        rank = int(os.path.basename(path)[len("stage.rank"):-len(".txt")])
        with open(path) as f:
            ranks[rank] = {k: int(v) for k, v in (line.split() for line in f if line.strip())}
    if not ranks:
        raise SystemExit(f"check_zero_runs: no stage.rank*.txt in {run_dir}")
    return ranks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zero0")
    ap.add_argument("zero1")
    ap.add_argument("--steps", type=int, required=True)
    args = ap.parse_args()
    r0, r1 = load(args.zero0), load(args.zero1)
    if set(r0) != set(r1):
        print(f"FAIL ranks differ: {sorted(r0)} vs {sorted(r1)}")
        return 1
    ok = True
    name = os.path.basename(args.zero1.rstrip("/"))
    print(f"{name}: rank stage dp numel padded | optimizer bytes zero0 zero1 (x dp) | "
          f"data bytes/step zero0 (2Psi(dp-1)/dp, Psi unpadded) zero1 (2Psi(dp-1)/dp, Psi padded)")
    for rank in sorted(r0):
        a, b = r0[rank], r1[rank]
        dp, n, padded = b["data"], b["numel"], b["padded_numel"]
        errors = []
        if a["numel"] != n or a["stage"] != b["stage"]:
            errors.append("layouts differ")
        if dp > 1 and n % dp == 0:
            errors.append(f"numel {n} divides dp {dp}: choose model dims that need padding")
        if a["padded_numel"] != a["numel"]:
            errors.append("zero = 0 padded its buffers")
        if padded % dp != 0 or not 0 <= padded - n < dp:
            errors.append(f"zero = 1 padded {n} to {padded}, not the next multiple of {dp}")
        if a["optimizer_bytes"] != 8 * n:
            errors.append(f"zero = 0 optimizer bytes {a['optimizer_bytes']} != 8 * {n}")
        if dp * b["optimizer_bytes"] != a["optimizer_bytes"] + 8 * (padded - n):
            errors.append(f"zero = 1 optimizer bytes {b['optimizer_bytes']} x {dp} != "
                          f"{a['optimizer_bytes']} + 8 x {padded - n} padding")
        psi0, psi1 = 4 * n, 4 * padded
        want0 = args.steps * (2 * psi0 * (dp - 1) // dp)
        want1 = args.steps * (2 * psi1 * (dp - 1) // dp)
        if a["data_bytes_sent"] != want0:
            errors.append(f"zero = 0 sent {a['data_bytes_sent']} bytes, formula {want0}")
        if b["data_bytes_sent"] != want1:
            errors.append(f"zero = 1 sent {b['data_bytes_sent']} bytes, formula {want1}")
        good = not errors
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {rank:>4} {b['stage']:>5} {dp:>2} {n:>6} {padded:>6} | "
              f"{a['optimizer_bytes']:>8} {b['optimizer_bytes']:>7} ({b['optimizer_bytes'] * dp}) | "
              f"{a['data_bytes_sent'] // args.steps:>8} ({2 * psi0 * (dp - 1) / dp:.1f}) "
              f"{b['data_bytes_sent'] // args.steps:>8} ({2 * psi1 * (dp - 1) / dp:.1f})" + ("".join("\n     " + e for e in errors)))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
