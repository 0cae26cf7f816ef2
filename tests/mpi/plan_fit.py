"""plan_fit.py: a per-rank budget (runtime.memory_gib) at which tiny.toml's uniform split on 4
pipeline stages does not fit: the uniform run is refused at start-up (exit 2, nothing written),
the planner's ("auto") trains within it, and its measured peaks stay under the budget. Then,
from `nupipe plan`, the largest train.micro_batch each of uniform and auto fits in one budget.

usage: plan_fit.py NUPIPE CONFIG WORKDIR MPIRUN [MPIRUN_FLAGS...]
"""
import json
import os
import shutil
import subprocess
import sys

NUPIPE, CONFIG, WORK, MPIRUN = sys.argv[1:5]
FLAGS = sys.argv[5:]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
GIB = 0.0036  # 3.69 MiB; the uniform split's stage 0 needs 3.99 MiB
# The budgets are sized for the unfused attention's activations (runtime.attention).
FOUR = ["runtime.attention=unfused", "parallel.pipeline=4", "parallel.data=1", "runtime.threads=1", "checkpoint.every=0",
        "train.steps=3"]


def train(run_dir, extra):
    cmd = [MPIRUN] + FLAGS + ["-np", "4", NUPIPE, "train", CONFIG]
    for s in FOUR + ["run.dir=" + run_dir, "runtime.memory_gib=%g" % GIB] + extra:
        cmd += ["--set", s]
    return subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


os.makedirs(WORK, exist_ok=True)
uni, aut = os.path.join(WORK, "uniform"), os.path.join(WORK, "auto")
for d in (uni, aut):
    shutil.rmtree(d, ignore_errors=True)
p = train(uni, ["parallel.stage_layers=uniform"])
if p.returncode != 2 or "predicted to need" not in p.stdout or \
        "the planner fits it: parallel.stage_layers = [" not in p.stdout:
    fail("uniform: exit %d, want 2 with the prediction and the planner's split:\n%s" %
         (p.returncode, p.stdout[-2000:]))
if os.path.exists(uni):
    fail("the refused run wrote " + uni)
print("uniform: refused, exit 2: " + [l for l in p.stdout.splitlines() if "predicted" in l][0])
p = train(aut, ["parallel.stage_layers=auto", "train.recompute=auto"])
if p.returncode != 0:
    fail("auto: exit %d\n%s" % (p.returncode, p.stdout[-3000:]))
print([l for l in p.stdout.splitlines() if "planner:" in l][0].split("] ", 1)[1])
budget = int(GIB * (1 << 30))
with open(os.path.join(aut, "memory.json")) as f:
    ranks = json.load(f)["ranks"]
for r in ranks:
    if r["measured_peak_total"] > budget:
        fail("rank %d measured %d > budget %d" % (r["rank"], r["measured_peak_total"], budget))
print("auto: trained; measured peak per rank %s bytes, budget %d" %
      ([r["measured_peak_total"] for r in ranks], budget))


def largest_micro_batch(split, recompute, gib):
    best = 0
    for mb in range(1, 33):
        cmd = [NUPIPE, "plan", CONFIG, "--memory-gib", "%g" % gib, "--recompute", recompute,
               "--json"]
        for s in ["parallel.pipeline=4", "parallel.data=1", "parallel.stage_layers=uniform",
                  "train.micro_batch=%d" % mb,
                  "train.global_batch=%d" % (8 * mb)]:
            cmd += ["--set", s]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True).stdout
        plans = {p["name"]: p for p in json.loads(out)["plans"]}
        if plans.get(split, {}).get("fits"):
            best = mb
    return best


for gib in (0.008, 0.016):
    u = largest_micro_batch("uniform", "none", gib)
    s = largest_micro_batch("auto", "none", gib)
    a = largest_micro_batch("auto", "auto", gib)
    print("budget %.0f MiB per rank, pipeline 4: largest micro_batch uniform %d; auto split %d "
          "(%.2fx); auto split + recompute %d (%.2fx)"
          % (gib * 1024, u, s, s / max(u, 1), a, a / max(u, 1)))
    if a < u or s < u:
        fail("auto fits less than uniform")
print("PASS")
