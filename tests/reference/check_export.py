#!/usr/bin/python3
"""check_export.py: end-to-end test of scripts/export_hf.py without `transformers`: trains a tiny
model a few steps with nupipe, exports its checkpoint, and checks the HF GPT-2 state_dict.

    /usr/bin/python3 tests/reference/check_export.py --nupipe build/bin/nupipe \
        --config configs/tiny.toml --workdir /tmp/export [--set model.tie_embeddings=false ...]

The training run validates on a token file this script writes (data.val), so the validation
windows nupipe used are known here exactly. Checks:
  * keys, shapes, dtypes of OUT.pt are exactly GPT2LMHeadModel's (the list is spelled out here,
    not taken from the exporter), and every weight round-trips bitwise: the HF tensor, transposed
    back where HF's Conv1D stores [in, out], equals the state.h5 dataset; tied: lm_head.weight
    equals transformer.wte.weight; OUT.config.json matches the checkpoint's attributes.
  * the loss and the logits of a GPT-2 forward written in HF's layout (x @ W + b, gelu_new,
    HF-style causal masking, float64, hyper-parameters from OUT.config.json) agree with
    torch_gpt.py's model loaded straight from state.h5 (float64) to --tol, on the validation
    batch and on a shorter random batch; and the loss with the val_loss nupipe logged for the
    checkpoint's step (float32 in nupipe) to --val-tol. Run it with model.init_std = 0.2 (as
    run_export.sh does): at 0.02 the logits are so small that the loss barely depends on the
    weights (swapping q and k moves it by ~3e-6 relative; at 0.2 by ~6e-3).
  * a checkpoint with one byte flipped inside a dataset is refused (exit 4, no OUT.pt), and is
    exported with --no-verify with exactly that one weight changed; bad usage exits 2 and a run
    directory in place of a checkpoint exits 4.
Exit status: 0 pass, 1 a check failed, 2 nupipe or the exporter could not be run as expected.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
EXPORT = os.path.join(REPO_ROOT, "scripts", "export_hf.py")
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torch_gpt import GPT, GPTConfig, load_params, param_shapes  # noqa: E402

TOKEN_MAGIC, TOKEN_VERSION = 20240520, 1  # llm.c token files (runtime/data/token_file.h)


class SetupError(Exception):
    """nupipe or the exporter did not run as the test needs."""


# ---- running the tools ----------------------------------------------------------------------

def run(cmd, expect=None):
    """Runs cmd, echoing it; returns (rc, stdout + stderr). With `expect`, a different exit
    status raises SetupError."""
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if expect is not None and p.returncode != expect:
        raise SetupError(f"exited {p.returncode}, expected {expect}:\n{out}")
    return p.returncode, out


def export(ckpt, out, *flags):
    return run([sys.executable, EXPORT, ckpt, out, *flags])


def write_token_file(path, tokens):
    header = np.zeros(256, dtype="<i4")
    header[:3] = (TOKEN_MAGIC, TOKEN_VERSION, len(tokens))
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


def vocab_size(config_path, overrides):
    with open(config_path, "rb") as f:
        v = tomllib.load(f)["model"]["vocab_size"]
    for kv in overrides:
        if kv.startswith("model.vocab_size="):
            v = int(kv.split("=", 1)[1])
    return v


# ---- the two models -------------------------------------------------------------------------

def hf_keys(n_layer):
    """GPT2LMHeadModel's parameter keys, in its state_dict() order."""
    keys = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(n_layer):
        keys += [f"transformer.h.{i}.{k}" for k in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
    return keys + ["transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"]


def nupipe_name(hf_key, tied):
    """(nupipe tensor name, transposed?) for an HF key."""
    if hf_key == "lm_head.weight":
        return ("embed.wte.weight" if tied else "head.lm.weight"), False
    k = hf_key.removeprefix("transformer.")
    for a, b in (("wte.", "embed.wte."), ("wpe.", "embed.wpe."), ("ln_f.", "head.ln_f.")):
        if k.startswith(a):
            return b + k[len(a):], False
    _, i, rest = k.split(".", 2)  # h.<i>.<module>.<param>
    module, param = rest.rsplit(".", 1)
    mod = {"ln_1": "ln1", "ln_2": "ln2", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
           "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}[module]
    return f"blocks.{i}.{mod}.{param}", param == "weight" and not module.startswith("ln_")


# HF's names: "gelu_new" is the tanh approximation (nupipe's), "gelu" the exact erf one.
ACTIVATIONS = {
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)
                                                      * (x + 0.044715 * x ** 3))),
    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),
}


def hf_logits(sd, cfg, tokens):
    """Logits [B, T, V] of GPT-2 in HF's layout, written out from the state_dict and the config
    (float64): Conv1D y = x @ W + b with W [in, out]; c_attn columns [q | k | v]."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    C, H, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    D = C // H
    inner = cfg["n_inner"] or 4 * C
    act = ACTIVATIONS[cfg["activation_function"]]

    def layer_norm(x, p):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased
        return (x - mu) / torch.sqrt(var + eps) * sd[p + ".weight"] + sd[p + ".bias"]

    def conv1d(x, p):
        return x @ sd[p + ".weight"] + sd[p + ".bias"]

    B, T = tokens.shape
    x = sd["transformer.wte.weight"][tokens] + sd["transformer.wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        q, k, v = conv1d(layer_norm(x, p + "ln_1"), p + "attn.c_attn").split(C, dim=2)
        q, k, v = (t.reshape(B, T, H, D).permute(0, 2, 1, 3) for t in (q, k, v))
        w = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        a = (torch.softmax(w, dim=-1) @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        x = x + conv1d(a, p + "attn.c_proj")
        h = act(conv1d(layer_norm(x, p + "ln_2"), p + "mlp.c_fc"))
        assert h.shape[-1] == inner
        x = x + conv1d(h, p + "mlp.c_proj")
    return layer_norm(x, "transformer.ln_f") @ sd["lm_head.weight"].t()


def nupipe_logits(model, tokens):
    """torch_gpt.GPT.forward up to the logits."""
    x = model.embed(tokens)
    for block in model.blocks:
        x = block(x)
    return model.head.ln_f(x) @ model.lm_weight().t()


def mean_ce(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()


def nupipe_layout_model(h5):
    """torch_gpt.py's GPT (nupipe's names and layout), float64, weights from state.h5."""
    a = h5.attrs
    eps = tomllib.loads(str(a["config"]))["model"]["ln_eps"]
    cfg = GPTConfig(int(a["model.n_layer"]), int(a["model.d_model"]), int(a["model.n_head"]),
                    int(a["model.vocab_size"]), int(a["model.seq_len"]),
                    bool(a["model.tie_embeddings"]), float(eps))
    model = GPT(cfg).to(torch.float64)
    load_params(model, h5, "model")
    return cfg, model


def val_batch(tokens, effective):
    """The validation batch nupipe evaluates (launcher/train_step.cpp validate): replica r's
    micro-batch mb reads sequential windows (r * val_batches + mb) * micro_batch onwards, so all
    replicas together read windows 0 .. data * val_batches * micro_batch - 1 (modulo the window
    count; runtime/data/batch_sampler.cpp fill_sequential), window w = stream[w T .. w T + T]."""
    T = effective["model"]["seq_len"]
    n = (effective["parallel"]["data"] * effective["train"]["val_batches"]
         * effective["train"]["micro_batch"])
    n_windows = (len(tokens) - 1) // T
    starts = [(w % n_windows) * T for w in range(n)]
    x = np.stack([tokens[s:s + T] for s in starts]).astype(np.int64)
    y = np.stack([tokens[s + 1:s + T + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a)


# ---- the test -------------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.failures = []

    def __call__(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok


def check_state_dict(check, sd, h5, hp):
    keys = hf_keys(hp["n_layer"])
    missing, extra = sorted(set(keys) - set(sd))[:4], sorted(set(sd) - set(keys))[:4]
    check(list(sd.keys()) == keys,
          f"OUT.pt holds exactly the {len(keys)} GPT2LMHeadModel keys, in state_dict() order"
          + ("" if list(sd.keys()) == keys else f" (missing {missing}, extra {extra})"))
    C, V, T = hp["d_model"], hp["vocab_size"], hp["seq_len"]
    hf_shapes = {"attn.c_attn.weight": (C, 3 * C), "attn.c_proj.weight": (C, C),
                 "mlp.c_fc.weight": (C, 4 * C), "mlp.c_proj.weight": (4 * C, C),
                 "wte.weight": (V, C), "wpe.weight": (T, C), "lm_head.weight": (V, C)}
    bad_shape, bad_bits, bad_layout = [], [], []
    for key in keys:
        if key not in sd:
            continue
        t = sd[key]
        name, transposed = nupipe_name(key, hp["tie_embeddings"])
        want = next((s for suffix, s in hf_shapes.items() if key.endswith(suffix)), None)
        if want is not None and tuple(t.shape) != want:
            bad_shape.append(f"{key} {tuple(t.shape)} != {want}")
        if t.dtype != torch.float32 or not t.is_contiguous():
            bad_layout.append(key)
        back = (t.t() if transposed else t).numpy()
        ref = h5["model/" + name][()]
        if back.shape != ref.shape or not np.array_equal(back.view(np.uint32), ref.view(np.uint32)):
            bad_bits.append(f"{key} vs model/{name}")
    check(not bad_shape, "HF shapes (Conv1D weights [in, out], lm_head [V, C])"
          + (f": {bad_shape[:3]}" if bad_shape else ""))
    check(not bad_layout, "every tensor is contiguous float32"
          + (f": {bad_layout[:3]}" if bad_layout else ""))
    check(not bad_bits, "every weight round-trips bitwise (Conv1D ones transposed back) to state.h5"
          + (f": {bad_bits[:3]}" if bad_bits else ""))
    if hp["tie_embeddings"]:
        check("model/head.lm.weight" not in h5
              and torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"]),
              "tied: lm_head.weight == transformer.wte.weight (state.h5 has no head.lm.weight)")
    else:
        check(not torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"]),
              "untied: lm_head.weight is head.lm.weight, not wte")


def check_config(check, cfg, h5, hp, step):
    want = {"vocab_size": hp["vocab_size"], "n_positions": hp["seq_len"], "n_embd": hp["d_model"],
            "n_layer": hp["n_layer"], "n_head": hp["n_head"], "n_inner": None,
            "activation_function": "gelu_new", "layer_norm_epsilon": hp["ln_eps"],
            "tie_word_embeddings": hp["tie_embeddings"]}
    wrong = {k: (cfg.get(k, "<missing>"), v) for k, v in want.items()
             if cfg.get(k, "<missing>") != v or type(cfg.get(k)) is not type(v)}
    check(not wrong, "OUT.config.json's GPT2Config fields match the checkpoint"
          + (f": {wrong}" if wrong else ""))
    check(cfg.get("nupipe", {}).get("step") == step == int(h5.attrs["step"]),
          f"OUT.config.json records nupipe step {step}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nupipe", required=True, help="the nupipe binary")
    ap.add_argument("--config", required=True, help="TOML config to train (e.g. configs/tiny.toml)")
    ap.add_argument("--workdir", required=True, help="scratch directory (emptied first)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra nupipe config overrides")
    ap.add_argument("--steps", type=int, default=6, help="training steps (checkpoint.every = half)")
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="relative tolerance, HF-layout vs torch_gpt.py loss (both float64)")
    ap.add_argument("--val-tol", type=float, default=1e-5,
                    help="relative tolerance, HF-layout loss vs nupipe's logged val_loss (float32)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    check = Checks()
    work = os.path.abspath(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run_dir, val_file = os.path.join(work, "run"), os.path.join(work, "val.bin")

    try:
        # A validation stream of our own: uniform random ids over the whole vocabulary.
        V = vocab_size(args.config, args.set)
        stream = np.random.default_rng(1234).integers(0, V, size=4097)
        write_token_file(val_file, stream)
        sets = [f"train.steps={args.steps}", f"checkpoint.every={max(1, args.steps // 2)}",
                "parallel.pipeline=1", "parallel.data=1", "parallel.stage_layers=uniform",
                f"run.dir={run_dir}", "runtime.threads=1", f"data.val={val_file}", *args.set]
        run([args.nupipe, "train", args.config] + [a for kv in sets for a in ("--set", kv)],
            expect=0)
        ckpt = os.path.join(run_dir, "checkpoints", f"step_{args.steps:08d}")
        out = os.path.join(work, "model.pt")
        rc, log = export(ckpt, out, "--nupipe", args.nupipe)
        if rc != 0:
            raise SetupError(f"export_hf.py exited {rc}:\n{log}")
        print(log.strip())

        sd = torch.load(out)
        with open(os.path.join(work, "model.config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            last = [json.loads(line) for line in f][-1]
        with h5py.File(os.path.join(ckpt, "state.h5"), "r") as h5:
            effective = tomllib.loads(str(h5.attrs["config"]))
            mcfg, model = nupipe_layout_model(h5)
            hp = {"n_layer": mcfg.n_layer, "d_model": mcfg.d_model, "n_head": mcfg.n_head,
                  "vocab_size": mcfg.vocab_size, "seq_len": mcfg.seq_len,
                  "tie_embeddings": mcfg.tie_embeddings, "ln_eps": mcfg.ln_eps}
            step = int(h5.attrs["step"])
            print(f"checkpoint step {step}: {hp}")
            check_state_dict(check, sd, h5, hp)
            check_config(check, cfg, h5, hp, step)
            stored = {k.removeprefix("model/") for k in _datasets(h5, "model")}
            check(set(param_shapes(mcfg)) == stored,
                  "state.h5's model/ tensors are torch_gpt.param_shapes' names")

        # Losses: the HF-layout forward vs torch_gpt.py (float64) vs nupipe's own val_loss.
        tok, tgt = val_batch(stream, effective)
        g = torch.Generator().manual_seed(7)
        short = torch.randint(0, V, (3, mcfg.seq_len - 5), generator=g)
        short_tgt = torch.randint(0, V, (3, mcfg.seq_len - 5), generator=g)
        if not check(cfg.get("activation_function") in ACTIVATIONS,
                     f"activation_function {cfg.get('activation_function')!r} is one of "
                     f"{sorted(ACTIVATIONS)}"):
            raise SetupError("cannot run the HF-layout model with this config")
        with torch.no_grad():
            for what, (x, y) in (("validation batch", (tok, tgt)),
                                 ("short batch", (short, short_tgt))):
                z_hf, z_np = hf_logits(sd, cfg, x), nupipe_logits(model, x)
                l_hf, l_np = mean_ce(z_hf, y), model(x, y).item()
                e = rel(l_hf, l_np)
                check(e < args.tol, f"{what} {list(x.shape)}: loss HF layout {l_hf:.12f}  "
                      f"torch_gpt {l_np:.12f}  rel diff {e:.3e} (tol {args.tol:g})")
                e = (torch.linalg.norm(z_hf - z_np) / torch.linalg.norm(z_np)).item()
                check(e < args.tol, f"{what}: logits HF layout vs torch_gpt, ||diff|| / ||logits|| "
                      f"{e:.3e} (tol {args.tol:g})")
                if what == "validation batch":
                    l_val = last.get("val_loss")
                    ok_step = last.get("step") == step  # metrics.jsonl counts steps as checkpoints do
                    e = rel(l_hf, l_val) if l_val is not None else math.inf
                    check(ok_step and e < args.val_tol,
                          f"{what}: HF layout {l_hf:.12f}  nupipe val_loss (metrics.jsonl, step "
                          f"{last.get('step')}) {l_val}  rel diff {e:.3e} (tol {args.val_tol:g})")

        check_refusals(check, args, work, run_dir, ckpt, sd)
    except SetupError as e:
        print(f"SETUP FAILED: {e}", file=sys.stderr)
        return 2
    if check.failures:
        print(f"FAIL: {len(check.failures)} check(s) failed")
        return 1
    print("PASS: export_hf.py round-trips the weights and the HF-layout model's loss matches")
    return 0


def check_refusals(check, args, work, run_dir, ckpt, sd):
    """A flipped byte inside a dataset, bad usage, a run directory."""
    damaged = os.path.join(work, "damaged")
    shutil.copytree(ckpt, damaged)
    with open(os.path.join(damaged, "manifest.json")) as f:
        regions = json.load(f)["files"][0]["regions"]
    target = "model/blocks.0.attn.qkv.weight"
    r = next(r for r in regions if r["what"].startswith(target + " "))
    element = r["bytes"] // 8  # a float32 a quarter of the way into the region
    pos = r["offset"] + 4 * element + 2  # flip the low exponent/high mantissa byte
    with open(os.path.join(damaged, "state.h5"), "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x40]))
    out = os.path.join(work, "damaged.pt")
    rc, log = export(damaged, out, "--nupipe", args.nupipe)
    wrote = os.path.exists(out) or os.path.exists(os.path.join(work, "damaged.config.json"))
    check(rc == 4 and not wrote and "checksum mismatch" in log and target in log,
          f"byte {pos} flipped in {target}: exit {rc} (want 4), no OUT.pt, the message names it")
    print("    " + log.strip().replace("\n", "\n    "))

    rc, log = export(damaged, out, "--no-verify")
    if check(rc == 0 and os.path.exists(out),
             f"--no-verify exports the damaged checkpoint: exit {rc}"):
        key = "transformer.h.0.attn.c_attn.weight"
        changed = torch.load(out)[key].t().reshape(-1) != sd[key].t().reshape(-1)
        diff = changed.nonzero().flatten().tolist()
        check(diff == [element],
              f"  ... with exactly element {element} of {target} changed (got {diff[:5]})")

    rc, log = run([sys.executable, EXPORT, ckpt])
    check(rc == 2, f"a missing argument exits {rc} (want 2)")
    rc, log = export(run_dir, os.path.join(work, "x.pt"), "--nupipe", args.nupipe)
    check(rc == 4 and "run directory" in log and not os.path.exists(os.path.join(work, "x.pt")),
          f"a run directory in place of a checkpoint exits {rc} (want 4) with a hint")


def _datasets(h5, group):
    names = []
    h5[group].visititems(
        lambda n, o: names.append(f"{group}/{n}") if isinstance(o, h5py.Dataset) else None)
    return names


if __name__ == "__main__":
    sys.exit(main())
