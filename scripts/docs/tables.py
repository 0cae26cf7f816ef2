#!/usr/bin/python3
"""tables.py: the Markdown tables (and the figures around them) docs/planner.md shows, computed by `nupipe plan --json` here and
now, so check_docs.py can compare them with the page (and --write put them there).

usage: tables.py micro-batch | yuan | mixed | gpt3   (run from the repository root; build/bin/nupipe)
"""
import json
import subprocess
import sys

NUPIPE = "build/bin/nupipe"
GIB = float(1 << 30)


def plan(config, *args):
    p = subprocess.run([NUPIPE, "plan", config, "--json"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if not p.stdout.strip():
        sys.exit("nupipe plan %s %s: exit %d\n%s" % (config, " ".join(args), p.returncode,
                                                    p.stderr))
    return {x["name"]: x for x in json.loads(p.stdout)["plans"]}


def split(p):
    return "[" + ", ".join(str(c) for c in p["stage_layers"]) + "]"


def slowest(p):
    return max(s["time_ms"] for s in p["stages"])


def micro_batch():
    """The largest train.micro_batch each split fits at pipeline 4 (8 microbatches per step)."""
    def largest(name, recompute, gib):
        best = 0
        for mb in range(1, 49):
            plans = plan("configs/tiny.toml", "--memory-gib", "%g" % gib, "--recompute", recompute,
                         "--set", "parallel.pipeline=4", "--set", "parallel.data=1",
                         "--set", "parallel.stage_layers=uniform",
                         "--set", "train.micro_batch=%d" % mb,
                         "--set", "train.global_batch=%d" % (8 * mb))
            if plans.get(name, {}).get("fits"):
                best = mb
        return best

    print("| budget per rank | uniform | auto split | auto split + recompute |")
    print("|---|---|---|---|")
    for gib in (0.008, 0.016):
        u = largest("uniform", "none", gib)
        s = largest("auto", "none", gib)
        a = largest("auto", "auto", gib)
        print("| %.0f MiB | %d | %d (%.2fx) | %d (%.2fx) |" % (gib * 1024, u, s, s / u, a, a / u))


def yuan():
    cfg = "configs/yuan2-24l-h6144.toml"
    base = plan(cfg, "--compare", "2,2,3,3,4,4,4,2", "--recompute", "full", "--tflops", "400")
    uni, hand = base["uniform"], base["compare"]
    budget = "%.6f" % (hand["peak_bytes"] / GIB)
    full = plan(cfg, "--recompute", "full", "--tflops", "400", "--memory-gib", budget)["auto"]
    auto = plan(cfg, "--recompute", "auto", "--tflops", "400", "--memory-gib", budget)["auto"]
    print("| split | peak stage memory | slowest stage | simulated step |")
    print("|---|---|---|---|")
    rows = [("uniform [3 x 8]", uni),
            ("the report's [2,2,3,3,4,4,4,2]", hand),
            ("nupipe, budget = the hand split's peak (%.2f GiB): %s" %
             (hand["peak_bytes"] / GIB, split(full).replace(" ", "")), full),
            ("nupipe, same budget, `--recompute auto`: %s" % split(auto).replace(" ", ""), auto)]
    for name, p in rows:
        print("| %s | %.2f GiB | %.2f ms | %.0f ms |" % (name, p["peak_bytes"] / GIB, slowest(p),
                                                        p["step_ms"]))
    print()
    print("Uniform against the hand split: %.2f and %.2f GiB (%+.0f%%). Within the hand split's "
          "peak the planner's split has %.2f GiB to spare, and its simulated step is %+.2f%% "
          "against the hand split's with full recompute and %+.2f%% with the planner choosing "
          "recompute." %
          (uni["peak_bytes"] / GIB, hand["peak_bytes"] / GIB,
           100 * (hand["peak_bytes"] / uni["peak_bytes"] - 1),
           (hand["peak_bytes"] - full["peak_bytes"]) / GIB,
           100 * (full["step_ms"] / hand["step_ms"] - 1),
           100 * (auto["step_ms"] / hand["step_ms"] - 1)))


def mixed():
    cfg = "configs/yuan2-24l-h6144-mixed.toml"
    plans = plan(cfg, "--recompute", "full", "--compare", "6,6,6,6")
    even, auto = plans["compare"], plans["auto"]
    print("| split | fits | peak per stage (GiB) | slowest stage | simulated step |")
    print("|---|---|---|---|---|")
    for name, p in (("[6, 6, 6, 6]: the even split", even), ("nupipe " + split(auto), auto)):
        over = [(i, s) for i, s in enumerate(p["stages"]) if not s["fits"]]
        fits = "yes" if not over else "no: " + ", ".join(
            "stage %d needs %.1f of %.0f" % (i, s["peak_bytes"] / GIB, s["budget_bytes"] / GIB)
            for i, s in over)
        print("| %s | %s | %s | %.0f ms | %.2f s |" % (
            name, fits, " / ".join("%.1f" % (s["peak_bytes"] / GIB) for s in p["stages"]),
            slowest(p), p["step_ms"] / 1000))
    print()
    print("The planner's step is %.0f%% shorter than the even split's would be." %
          (100 * (1 - auto["step_ms"] / even["step_ms"])))


def gpt3():
    cfg = "configs/gpt3-175b.toml"
    base = ["--recompute", "auto", "--tflops", "400", "--memory-gib", "80"]
    plans = plan(cfg, *base)
    auto, uni = plans["auto"], plans["uniform"]
    net = plan(cfg, *base, "--p2p-gbps", "50", "--net-gbps", "50", "--peak-tflops", "989",
               "--gpu-hour-usd", "2.5")["auto"]
    uni_none = plan(cfg, "--recompute", "none", "--tflops", "400", "--memory-gib", "80")["uniform"]
    del uni
    print("Without recompute the uniform split needs %.2f GiB on its fullest stage; the planner "
          "recomputes %d of the 96 blocks and fits in %.2f GiB, at a simulated %.1f s per step "
          "(bubble %.1f%%). With 50 GB/s between stages and for the reduction, and an H100's 989 "
          "TFLOP/s dense bf16 peak at $2.50 per device-hour (`--p2p-gbps 50 --net-gbps 50 "
          "--peak-tflops 989 --gpu-hour-usd 2.5`): %.1f s per step, %.0fk tokens/s, MFU %.1f%%, "
          "$%.2f per million tokens, with a bubble of %.0f%%." %
          (uni_none["peak_bytes"] / GIB, sum(auto["recompute"]), auto["peak_bytes"] / GIB,
           auto["step_ms"] / 1000, 100 * auto["bubble_fraction"], net["step_ms"] / 1000,
           net["tokens_per_s"] / 1000, 100 * net["mfu"], net["usd_per_million_tokens"],
           100 * net["bubble_fraction"]))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) == 2 else ""
    fn = {"micro-batch": micro_batch, "yuan": yuan, "mixed": mixed, "gpt3": gpt3}.get(what)
    if fn is None:
        sys.exit(__doc__)
    fn()
