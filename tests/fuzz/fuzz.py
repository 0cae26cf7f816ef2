"""fuzz.py: runs nupipe on mutated configs, token files and checkpoints (tests/fuzz/mutators.py)
and counts the outcomes. Every case must end with a documented exit code for its kind (0, or 2
for a config, 3 for a data file it names or is given, 4 for a checkpoint, 6 for a run that diverged), within the time
limit, with an `error:` line when it fails, with UTF-8 output, without a sanitizer report, and
(checkpoints) without changing the checkpoint it was given. Anything else is a defect: its case
directory is kept with a repro.sh.

usage: fuzz.py --nupipe BIN --config CONFIG --work DIR [--cases N] [--seed S] [--jobs J]
               [--kinds config,tokens,checkpoint] [--timeout S] [--sanitized] [--only I]
Exit 0: no defect; 1: defects (listed); 2: bad usage or the base run failed.
The same seed and case number give the same mutation: --only I reruns case I alone.
"""
import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sanitize"))
import mutators  # noqa: E402
from sanitizer_env import sanitizer_env, sanitizer_reports  # noqa: E402

# A short single-process run of the config given: 2 steps of a tiny corpus, a checkpoint at
# step 2, one thread.
SMALL = ["parallel.pipeline=1", "parallel.data=1", "parallel.stage_layers=uniform",
         "train.steps=2", "checkpoint.every=2", "train.val_every=2", "train.val_batches=1",
         "data.synthetic.train_tokens=65536", "data.synthetic.val_tokens=8192",
         "runtime.threads=1", "run.log_every=1"]
# (A config may name a data file that is missing or bad: 3.)
ALLOWED = {"config": {0, 2, 3, 6}, "tokens": {0, 3}, "verify": {0, 4}, "resume": {0, 4, 6}}


def sets(items):
    return [a for s in items for a in ("--set", s)]


class Runner:
    def __init__(self, args):
        self.args = args
        self.env = sanitizer_env() if args.sanitized else dict(
            os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def run(self, cmd, cwd):
        """(exit code or 'hang', output text, output was UTF-8)"""
        t0 = time.time()
        p = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=self.args.timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            rc = "hang"
        try:
            text, utf8 = out.decode("utf-8"), True
        except UnicodeDecodeError:
            text, utf8 = out.decode("utf-8", "replace"), False
        return rc, text, utf8, time.time() - t0


def judge(kind, rc, text, utf8):
    """The defect a command's result shows, or None."""
    if rc == "hang":
        return "hang"
    if sanitizer_reports(text):
        return "sanitizer report"
    if rc not in ALLOWED[kind]:
        return "exit %s (allowed: %s)" % (rc, sorted(ALLOWED[kind]))
    if rc != 0 and "error: " not in text:
        return "exit %d without an error: line" % rc
    if not utf8:
        return "output not UTF-8"
    return None


def tree_digest(d):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(d)):
        dirs.sort()
        for name in sorted(files + dirs):
            p = os.path.join(root, name)
            h.update(p[len(d):].encode())
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def one_case(runner, base, i):
    args = runner.args
    rnd = random.Random("%d:%d" % (args.seed, i))
    kind = args.kinds[i % len(args.kinds)]
    d = os.path.join(args.work, "cases", "%06d" % i)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    run_dir = os.path.join(d, "run")
    steps = []  # (command kind, argv)
    if kind == "config":
        data, what = mutators.mutate_config(rnd, base["config_text"])
        with open(os.path.join(d, "config.toml"), "wb") as f:
            f.write(data)
        steps.append(("config", [args.nupipe, "train", os.path.join(d, "config.toml")] +
                      sets(["run.dir=" + run_dir])))
    elif kind == "tokens":
        data, meta, what = mutators.mutate_tokens(rnd, base["tokens"], base["tokens_meta"])
        path = os.path.join(d, "train.bin")
        with open(path, "wb") as f:
            f.write(data)
        if meta is not None:
            with open(path + ".json", "wb") as f:
                f.write(meta if isinstance(meta, bytes) else meta.encode())
        steps.append(("tokens", [args.nupipe, "train", args.config] +
                      sets(SMALL + ["data.train=" + path, "data.val=" + base["tokens_path"],
                                    "run.dir=" + run_dir])))
    else:
        ck = os.path.join(d, "step_00000002")
        shutil.copytree(base["checkpoint"], ck)
        what = mutators.mutate_checkpoint(rnd, ck)
        steps.append(("verify", [args.nupipe, "ckpt", "verify", ck]))
        steps.append(("resume", [args.nupipe, "train", args.config] +
                      sets(SMALL + ["train.steps=3", "checkpoint.resume=" + ck,
                                    "checkpoint.strict=true", "run.dir=" + run_dir])))
        before = tree_digest(ck)
    results, defects = [], []
    for step_kind, cmd in steps:
        rc, text, utf8, secs = runner.run(cmd, d)
        results.append({"cmd": step_kind, "exit": rc, "seconds": round(secs, 2)})
        bad = judge(step_kind, rc, text, utf8)
        if bad:
            defects.append("%s: %s" % (step_kind, bad))
            with open(os.path.join(d, step_kind + ".out"), "w") as f:
                f.write(text)
    if kind == "checkpoint" and tree_digest(ck) != before:
        defects.append("resume: the checkpoint it was given changed")
    if defects:
        with open(os.path.join(d, "repro.sh"), "w") as f:
            f.write("#!/bin/sh\n# case %d (seed %d): %s\n" % (i, args.seed, what))
            for _, cmd in steps:
                f.write(" ".join(shlex.quote(a) for a in cmd) + "\n")
    else:
        shutil.rmtree(d, ignore_errors=True)
    return {"case": i, "kind": kind, "what": what, "results": results, "defects": defects}


def make_base(runner, args):
    """One clean run (the effective config holds every key; its checkpoint is what the
    checkpoint cases mutate) and a token file made by `nupipe data prepare`."""
    b = os.path.join(args.work, "base")
    shutil.rmtree(b, ignore_errors=True)
    os.makedirs(b)
    text = os.path.join(b, "text.txt")
    with open(text, "wb") as f:  # bytes enough for a few batches of 2 x 64 tokens
        f.write(bytes(random.Random(args.seed).randrange(256) for _ in range(16384)))
    tokens = os.path.join(b, "tokens.bin")
    for cmd in ([args.nupipe, "data", "prepare", "--text", text, "--out", tokens],
                [args.nupipe, "train", args.config] + sets(SMALL + ["run.dir=" + b + "/run"])):
        rc, out, _, _ = runner.run(cmd, b)
        if rc != 0 or sanitizer_reports(out):
            print("the base run failed (exit %s):\n  %s\n%s" % (rc, " ".join(cmd), out[-3000:]))
            sys.exit(2)
    with open(os.path.join(b, "run", "config.toml")) as f:
        config_text = f.read()
    with open(tokens, "rb") as f:
        tok = f.read()
    with open(tokens + ".json") as f:
        meta = f.read()
    return {"config_text": config_text, "tokens": tok, "tokens_meta": meta,
            "tokens_path": tokens, "checkpoint": os.path.join(b, "run", "checkpoints",
                                                              "step_00000002")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nupipe", required=True)
    ap.add_argument("--config", required=True, help="the base config (configs/tiny.toml)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--kinds", default="config,tokens,checkpoint")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--sanitized", action="store_true",
                    help="the binary is built with ASan+UBSan: run it with lsan.supp")
    ap.add_argument("--only", type=int, help="run this case alone")
    args = ap.parse_args()
    args.nupipe, args.config, args.work = (os.path.abspath(p) for p in
                                           (args.nupipe, args.config, args.work))
    args.kinds = args.kinds.split(",")
    if set(args.kinds) - {"config", "tokens", "checkpoint"} or args.cases < 1:
        ap.error("--kinds takes config, tokens, checkpoint; --cases >= 1")
    if mutators.xxhash is None and "checkpoint" in args.kinds:
        print("note: python3-xxhash is missing: checkpoints are mutated without resealing")
    runner = Runner(args)
    t0 = time.time()
    base = make_base(runner, args)
    cases = [args.only] if args.only is not None else range(args.cases)
    counts = collections.Counter()
    defects = []
    with open(os.path.join(args.work, "results.jsonl"), "w") as log, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda i: one_case(runner, base, i), cases):
            log.write(json.dumps(r) + "\n")
            outcome = " / ".join("%s %s" % (x["cmd"], x["exit"]) for x in r["results"])
            counts[(r["kind"], "DEFECT" if r["defects"] else outcome)] += 1
            if r["defects"]:
                defects.append(r)
    n = len(cases)
    print("%d cases (seed %d) in %.0f s with %s%s:" % (
        n, args.seed, time.time() - t0, args.nupipe, " (sanitized)" if args.sanitized else ""))
    for (kind, outcome), c in sorted(counts.items()):
        print("  %-10s %-28s %6d" % (kind, outcome, c))
    for r in defects:
        print("DEFECT case %d (%s: %s): %s\n  repro: %s" % (
            r["case"], r["kind"], r["what"][:200], "; ".join(r["defects"]),
            os.path.join(args.work, "cases", "%06d" % r["case"], "repro.sh")))
    print("%d defects in %d cases" % (len(defects), n))
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
