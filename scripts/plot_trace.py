#!/usr/bin/python3
"""plot_trace.py: draws a nupipe trace.json (Chrome trace, one process per rank) as a per-rank
timeline PNG: forward, backward, communication and optimizer spans, microbatch numbers on the
compute blocks, the validation pass that follows the update on validated steps hatched apart.

    /usr/bin/python3 scripts/plot_trace.py RUN_DIR/trace.json out.png [--step N]

--step N counts as the log does (step 1 is the first); the default is the last in the trace.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Each span kind its own colour (the pairs a reader tells apart, send/send-wait and
# all-reduce/reduce-scatter, far apart) and what it is, for the legend.
KINDS = {
    "forward": ("#4C72B0", "forward"),
    "backward": ("#55A868", "backward"),
    "backward_input": ("#1B7837", "B: backward to the input (what the previous stage waits for)"),
    "backward_weight": ("#B8E186", "W: the weights' gradients (fills the bubbles)"),
    "recv": ("#DD8452", "recv (waiting for the neighbour stage)"),
    "send": ("#C44E52", "send (posted)"),
    "send-wait": ("#5B1A18", "send-wait (this step's sends completing)"),
    "all-reduce": ("#8172B3", "all-reduce (loss, then gradients over replicas)"),
    "reduce-scatter": ("#2A9D8F", "reduce-scatter (ZeRO-1 gradient shards)"),
    "optimizer": ("#937860", "optimizer (AdamW update)"),
    "all-gather": ("#DA8BC3", "all-gather (ZeRO-1: updated parameters)"),
}
UPDATE = ("optimizer", "all-gather")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--step", type=int, default=None,
                    help="which training step to draw, counted as the log counts (default: the "
                         "last one in the trace)")
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
    # trace.json counts steps from 1, as the log and metrics.jsonl do.
    step = args.step if args.step is not None else max(e["args"]["step"] for e in spans)
    spans = [e for e in spans if e["args"]["step"] == step]
    if not spans:
        print(f"plot_trace: no spans for step {step}", file=sys.stderr)
        return 2
    t0 = min(e["ts"] for e in spans)
    ranks = sorted({e["pid"] for e in spans})
    # A validated step (every val_every-th and the last) runs the validation pass after the
    # update: its sends and receives carry the step's number but are not part of the training
    # step; drawn hatched and pale, apart from the step's own.
    update_end = {}
    for e in spans:
        if e["name"] in UPDATE:
            update_end[e["pid"]] = max(update_end.get(e["pid"], 0), e["ts"] + e["dur"])

    def validation(e):
        return e["pid"] in update_end and e["ts"] >= update_end[e["pid"]] - 1e-3

    fig, ax = plt.subplots(figsize=(14, 0.7 * len(ranks) + 2.2))
    drawn, validated = set(), False
    for row, pid in enumerate(ranks):
        for e in (e for e in spans if e["pid"] == pid):
            start, dur = (e["ts"] - t0) / 1e3, e["dur"] / 1e3
            compute = e["name"] in ("forward", "backward", "backward_input", "backward_weight")
            height = 0.8 if compute else 0.35
            color = KINDS.get(e["name"], ("#999999", e["name"]))[0]
            if validation(e):
                validated = True
                ax.broken_barh([(start, dur)], (row - height / 2, height), facecolors=color,
                               alpha=0.35, hatch="//", edgecolor="#555555", linewidth=0)
                continue
            drawn.add(e["name"])
            ax.broken_barh([(start, dur)], (row - height / 2, height), facecolors=color)
            mb = e["args"].get("microbatch")
            if compute and mb is not None and dur > 0:
                ax.text(start + dur / 2, row, str(mb), ha="center", va="center", fontsize=7,
                        color="white")
    ax.set_yticks(range(len(ranks)))
    ax.set_yticklabels([names.get(p, f"rank {p}") for p in ranks])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the step began")
    ax.set_title(f"{args.trace}: step {step}")
    order = [k for k in KINDS if k in drawn] + sorted(drawn - set(KINDS))
    handles = [plt.Rectangle((0, 0), 1, 1, color=KINDS.get(k, ("#999999", k))[0]) for k in order]
    labels = [KINDS.get(k, ("", k))[1] for k in order]
    if validated:
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="#BBBBBB", hatch="//",
                                     edgecolor="#555555", linewidth=0))
        labels.append("validation after the update (its sends/receives; its forward "
                      "compute is not traced)")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3,
              fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out} ({len(ranks)} ranks, step {step})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
