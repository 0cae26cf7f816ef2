#!/usr/bin/python3
"""plot_trace.py: draws a nupipe trace.json (Chrome trace, one process per rank) as a per-rank
timeline PNG: forward, backward, communication and optimizer spans, microbatch numbers on the
compute blocks.

    /usr/bin/python3 scripts/plot_trace.py RUN_DIR/trace.json out.png [--step N]
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "forward": "#4C72B0",
    "backward": "#55A868",
    "send": "#C44E52",
    "recv": "#DD8452",
    "send-wait": "#C44E52",
    "all-reduce": "#8172B3",
    "reduce-scatter": "#8172B3",
    "all-gather": "#DA8BC3",
    "optimizer": "#937860",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--step", type=int, default=None,
                    help="which training step to draw (default: the last one in the trace)")
    args = ap.parse_args()
    try:
        with open(args.trace) as f:
            events = json.load(f)["traceEvents"]
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_trace: cannot read {args.trace}: {e}", file=sys.stderr)
        return 2
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    spans = [e for e in events if e.get("ph") == "X"]
    if not spans:
        print(f"plot_trace: {args.trace} holds no spans (was run.trace = true?)", file=sys.stderr)
        return 2
    step = args.step if args.step is not None else max(e["args"]["step"] for e in spans)
    spans = [e for e in spans if e["args"]["step"] == step]
    if not spans:
        print(f"plot_trace: no spans for step {step}", file=sys.stderr)
        return 2
    t0 = min(e["ts"] for e in spans)
    ranks = sorted({e["pid"] for e in spans})
    fig, ax = plt.subplots(figsize=(14, 0.7 * len(ranks) + 1.5))
    for row, pid in enumerate(ranks):
        for e in (e for e in spans if e["pid"] == pid):
            start, dur = (e["ts"] - t0) / 1e3, e["dur"] / 1e3
            compute = e["name"] in ("forward", "backward")
            height = 0.8 if compute else 0.35
            ax.broken_barh([(start, dur)], (row - height / 2, height),
                           facecolors=COLORS.get(e["name"], "#999999"))
            mb = e["args"].get("microbatch")
            if compute and mb is not None and dur > 0:
                ax.text(start + dur / 2, row, str(mb), ha="center", va="center", fontsize=7,
                        color="white")
    ax.set_yticks(range(len(ranks)))
    ax.set_yticklabels([names.get(p, f"rank {p}") for p in ranks])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the step began")
    ax.set_title(f"{args.trace}: step {step}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    ax.legend(handles, COLORS.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=7,
              fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out} ({len(ranks)} ranks, step {step})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
