"""memory_model.py: the cost model's per-stage bytes against the allocator's measured peaks,
from run.dir/memory.json, on layouts that cover uneven splits, data 1 and 2, ZeRO 0 and 1,
recompute off, full and per stage, chunked and unchunked loss, 1F1B, GPipe, ZB-H1 and ZB-H2,
fp32 and bf16 (runtime.precision), fused and unfused attention (runtime.attention). Every
allocator tag's measured peak (params, grads, optimizer, activations, workspace, loss_workspace,
comm, weight_inputs) must equal the cost model's prediction to the byte on every rank. The
layouts marked "llama" train configs/llama-tiny.toml (beside CONFIG) instead: RMSNorm, rotary,
SwiGLU, grouped-query attention, an untied head; those marked "yuan" the same config with
Yuan 2.0's localized filtering (model.lfa = true, multi-head).

usage: memory_model.py NUPIPE CONFIG WORKDIR MPIRUN [MPIRUN_FLAGS...]
"""
import json
import os
import shutil
import subprocess
import sys

NUPIPE, CONFIG, WORK, MPIRUN = sys.argv[1:5]
FLAGS = sys.argv[5:]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
EXACT = ("params", "grads", "optimizer", "activations", "workspace", "loss_workspace", "comm",
         "weight_inputs")
LLAMA = os.path.join(os.path.dirname(CONFIG), "llama-tiny.toml")
LAYOUTS = [  # pipeline, data, stage_layers, zero, loss_chunk, recompute, schedule[, precision[, attention[, family]]]
    (2, 2, "[1,3]", 0, 0, "none", "1f1b"),
    (2, 2, "[1,3]", 1, 48, "full", "gpipe"),
    (2, 1, "[1,3]", 0, 0, "full", "1f1b"),
    (2, 2, "[3,1]", 0, 0, "[2,0]", "1f1b"),
    (2, 2, "[3,1]", 1, 0, "none", "gpipe"),
    (4, 1, "uniform", 1, 0, "[1,0,1,0]", "gpipe"),
    (4, 1, "[0,1,1,2]", 0, 32, "none", "1f1b"),
    (4, 1, "[1,1,1,1]", 0, 0, "full", "1f1b"),
    (1, 4, "uniform", 1, 0, "none", "1f1b"),
    (1, 2, "uniform", 0, 64, "[2]", "1f1b"),
    (3, 1, "[2,1,1]", 0, 0, "[1,1,0]", "gpipe"),
    (2, 2, "[1,3]", 1, 48, "none", "1f1b", "bf16"),
    (2, 2, "[3,1]", 0, 0, "[2,0]", "gpipe", "bf16"),
    (4, 1, "[0,1,1,2]", 0, 32, "full", "1f1b", "bf16"),
    (1, 4, "uniform", 1, 0, "none", "1f1b", "bf16"),
    # runtime.attention = "unfused" (the default is fused): the [H,T,T] probabilities kept and
    # one sequence's score gradient in backward
    (2, 2, "[1,3]", 1, 48, "full", "gpipe", "fp32", "unfused"),
    (4, 1, "[0,1,1,2]", 0, 32, "none", "1f1b", "fp32", "unfused"),
    (2, 2, "[3,1]", 0, 0, "[2,0]", "gpipe", "bf16", "unfused"),
    # the zero-bubble schedules: what B keeps for W (weight_inputs), replayed per schedule
    (2, 2, "[1,3]", 0, 0, "none", "zb-h1"),
    (2, 2, "[3,1]", 1, 48, "full", "zb-h2"),
    (4, 1, "[0,1,1,2]", 0, 32, "none", "zb-h1"),
    (1, 2, "uniform", 0, 0, "[2]", "zb-h1"),
    (4, 1, "[1,1,1,1]", 0, 0, "[1,0,1,0]", "zb-h2", "bf16"),
    (2, 2, "[1,3]", 1, 48, "[1,2]", "zb-h1", "fp32", "unfused"),
    # the llama family
    (2, 2, "[1,3]", 1, 48, "full", "1f1b", "fp32", "fused", "llama"),
    (4, 1, "[0,1,1,2]", 0, 32, "none", "zb-h1", "fp32", "fused", "llama"),
    (2, 2, "[3,1]", 0, 0, "[2,0]", "gpipe", "bf16", "unfused", "llama"),
    (2, 1, "[1,3]", 0, 0, "none", "zb-h2", "bf16", "fused", "llama"),
    # Yuan 2.0's localized filtering on the llama block
    (2, 2, "[1,3]", 1, 48, "full", "zb-h1", "fp32", "fused", "yuan"),
    (2, 1, "[3,1]", 0, 0, "[2,0]", "1f1b", "bf16", "unfused", "yuan"),
]

failures = 0
print("%-44s %5s %-9s %s" % ("layout (pp dp split zero chunk recompute schedule)", "rank",
                             "exact", "peak total predicted / measured"))
for layout in LAYOUTS:
    pp, dp, split, zero, chunk, rc, sched = layout[:7]
    precision = layout[7] if len(layout) > 7 else "fp32"
    attention = layout[8] if len(layout) > 8 else "fused"
    family = layout[9] if len(layout) > 9 else "gpt2"
    run_dir = os.path.join(WORK, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = ["train.steps=2", "run.dir=" + run_dir, "checkpoint.every=0", "runtime.threads=1",
            "parallel.pipeline=%d" % pp, "parallel.data=%d" % dp, "parallel.stage_layers=" + split,
            "parallel.zero=%d" % zero, "train.loss_chunk=%d" % chunk, "train.recompute=" + rc,
            "parallel.schedule=" + sched, "runtime.precision=" + precision,
            "runtime.attention=" + attention]
    if family == "yuan":
        sets += ["model.lfa=true", "model.n_kv_head=0"]
    cmd = [MPIRUN] + FLAGS + ["-np", str(pp * dp), NUPIPE, "train",
                              CONFIG if family == "gpt2" else LLAMA]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    name = "%d %d %s %d %d %s %s %s %s%s" % (pp, dp, split, zero, chunk, rc, sched, precision,
                                             attention, "" if family == "gpt2" else " " + family)
    if p.returncode != 0:
        print("FAIL %s: exit %d\n%s" % (name, p.returncode, p.stdout[-2000:]))
        failures += 1
        continue
    with open(os.path.join(run_dir, "memory.json")) as f:
        ranks = json.load(f)["ranks"]
    for r in ranks:
        bad = [k for k in EXACT if r["tags"][k]["predicted"] != r["tags"][k]["measured_peak"]]
        print("%-44s %5d %-9s %d / %d" % (name, r["rank"], "yes" if not bad else "NO " + ",".join(bad),
                                          r["predicted_total"], r["measured_peak_total"]))
        for k in bad:
            print("   %s: predicted %d, measured %d" % (k, r["tags"][k]["predicted"],
                                                        r["tags"][k]["measured_peak"]))
        failures += bool(bad)
print("%d layouts; %s" % (len(LAYOUTS), "every rank exact" if failures == 0 else
                          "%d mismatches" % failures))
sys.exit(1 if failures else 0)
