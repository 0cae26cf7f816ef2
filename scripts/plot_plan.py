#!/usr/bin/env python3
"""plot_plan.py: per-stage stacked memory bars (params, grads, optimizer, activations,
workspace, loss workspace) against each stage's budget, one panel per plan of `nupipe plan --json` (the
planner's split next to the uniform one, and any --compare), side by side.

usage: nupipe plan CONFIG --json [...] > plan.json
       scripts/plot_plan.py plan.json OUT.png [--title TEXT]
Run with /usr/bin/python3 (Debian's python3-matplotlib).
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = ["params", "grads", "optimizer", "activations", "workspace", "loss_workspace"]
COLORS = ["#4c72b0", "#55a868", "#c44e52", "#dd8452", "#8172b3", "#937860"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("plan_json")
    ap.add_argument("out_png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    try:
        with open(args.plan_json) as f:
            data = json.load(f)
        plans = data["plans"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit("plot_plan.py: %s is not the output of `nupipe plan --json`: %s" %
                 (args.plan_json, e))
    mib = 1024.0 * 1024.0
    fig, axes = plt.subplots(1, len(plans), figsize=(4.2 * len(plans), 4), sharey=True,
                             squeeze=False)
    for ax, plan in zip(axes[0], plans):
        stages = plan["stages"]
        x = list(range(len(stages)))
        bottom = [0.0] * len(stages)
        for kind, color in zip(KINDS, COLORS):
            vals = [s["bytes"].get(kind, 0) / mib for s in stages]
            ax.bar(x, vals, bottom=bottom, color=color, label=kind, width=0.7)
            bottom = [b + v for b, v in zip(bottom, vals)]
        budgets = [s.get("budget_bytes") for s in stages]
        for i, b in enumerate(budgets):
            if b is not None:
                ax.hlines(b / mib, i - 0.45, i + 0.45, colors="black", linestyles="--",
                          label="budget" if i == 0 else None)
        ax.set_xticks(x)
        ax.set_xticklabels(["%d\n%d blk%s" % (i, s["layers"],
                                              ", %d rc" % s["recompute"] if s["recompute"] else "")
                            for i, s in enumerate(stages)])
        ax.set_title("%s %s: %s\npeak %.2f MiB, step %.1f ms" % (
            plan["name"], plan["stage_layers"], "fits" if plan["fits"] else "does NOT fit",
            plan["peak_bytes"] / mib, plan["step_ms"]), fontsize=9)
        ax.set_xlabel("stage")
    axes[0][0].set_ylabel("MiB per rank")
    axes[0][-1].legend(fontsize=8, loc="upper right")
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out_png, dpi=110)
    print("wrote %s (%d plans)" % (args.out_png, len(plans)))


if __name__ == "__main__":
    main()
