#!/usr/bin/python3
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
    top = 0.0
    for plan in plans:
        for s in plan["stages"]:
            top = max(top, s["peak_bytes"] / mib, (s.get("budget_bytes") or 0) / mib)
    fig, axes = plt.subplots(1, len(plans), figsize=(4.4 * len(plans), 4.6), sharey=True,
                             squeeze=False)
    for ax, plan in zip(axes[0], plans):
        stages = plan["stages"]
        x = list(range(len(stages)))
        bottom = [0.0] * len(stages)
        for kind, color in zip(KINDS, COLORS):
            vals = [s["bytes"].get(kind, 0) / mib for s in stages]
            ax.bar(x, vals, bottom=bottom, color=color, label=kind, width=0.7)
            bottom = [b + v for b, v in zip(bottom, vals)]
        for i, s in enumerate(stages):
            peak, b = s["peak_bytes"] / mib, s.get("budget_bytes")
            over = b is not None and s["peak_bytes"] > b
            if over:  # the whole bar outlined, and by how much it misses
                ax.bar([i], [peak], width=0.7, fill=False, edgecolor="#d62728", linewidth=2.2,
                       zorder=3)
            ax.text(i, peak + 0.015 * top, "%.2f" % peak + ("\n+%.2f over" % (peak - b / mib)
                                                           if over else ""),
                    ha="center", va="bottom", fontsize=8, zorder=4,
                    color="#d62728" if over else "black",
                    fontweight="bold" if over else "normal")
            if b is not None:
                ax.hlines(b / mib, i - 0.45, i + 0.45, colors="black", linestyles="--",
                          linewidth=1.6, zorder=5, label="budget" if i == 0 else None)
        ax.set_xticks(x)
        ax.set_xticklabels(["%d\n%d blk%s" % (i, s["layers"],
                                              ", %d rc" % s["recompute"] if s["recompute"] else "")
                            for i, s in enumerate(stages)])
        if plan.get("fits") is None:
            verdict = "no budget given"
        else:
            verdict = "fits" if plan["fits"] else "does NOT fit"
        if plan.get("step_ms") is not None:
            step = "step %.2f ms" % plan["step_ms"]
        elif plan.get("step_units") is not None:
            step = "step %.1f block-microbatch units" % plan["step_units"]
        else:
            step = ""
        ax.set_title("%s %s: %s\npeak %.2f MiB%s" % (
            plan["name"], plan["stage_layers"], verdict, plan["peak_bytes"] / mib,
            ", " + step if step else ""), fontsize=9,
            color="#d62728" if plan.get("fits") is False else "black")
        ax.set_xlabel("stage")
        ax.set_ylim(0, top * 1.22)
    axes[0][0].set_ylabel("MiB per rank (peak labelled)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               frameon=False)
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(args.out_png, dpi=110)
    print("wrote %s (%d plans)" % (args.out_png, len(plans)))


if __name__ == "__main__":
    main()
