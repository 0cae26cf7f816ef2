#!/usr/bin/python3
"""check_export_llama.py: end-to-end test of scripts/export_hf.py on a model.family = "llama"
checkpoint, without `transformers`: trains a tiny llama a few steps with nupipe, exports its
checkpoint and checks the LlamaForCausalLM state_dict (with model.lfa, Yuan 2.0's
YuanForCausalLM one under Yuan's names, against torch_yuan.py).

    /usr/bin/python3 tests/reference/check_export_llama.py --nupipe build/bin/nupipe \
        --config configs/llama-tiny.toml --workdir /tmp/export_llama [--set KEY=VALUE ...]

Checks:
  * OUT.pt holds exactly LlamaForCausalLM's keys (spelled out here, not taken from the
    exporter) in its state_dict() order, with HF's shapes (q_proj [H D, C], k_proj and v_proj
    [K D, C], gate/up [F, C], down [C, F]), contiguous float32, each equal bitwise to its rows
    of the state.h5 dataset; tied: lm_head.weight is embed_tokens'; OUT.config.json's
    LlamaConfig fields match the checkpoint.
  * torch_llama.py's model loaded from OUT.pt under HF's names (float64, hyper-parameters from
    OUT.config.json: separate projections, repeat_kv, rotate_half) gives the loss of the same
    model loaded from state.h5 through nupipe's names to --tol, and the val_loss nupipe logged
    for the checkpoint's step (float32 in nupipe) to --val-tol, on nupipe's validation batch.
Exit status: 0 pass, 1 a check failed, 2 nupipe or the exporter could not be run as expected.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_llama  # noqa: E402
import torch_yuan  # noqa: E402
from check_export import (Checks, SetupError, export, rel, run, val_batch,  # noqa: E402
                          vocab_size, write_token_file)


LLAMA_BLOCK = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
               "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
               "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")
# YuanForCausalLM's block as its modeling file registers it: v_proj, o_proj, the filter, q_proj,
# k_proj in the attention; up, gate, down in the MLP.
YUAN_BLOCK = ("self_attn.v_proj.weight", "self_attn.o_proj.weight",
              "self_attn.lf_gate.conv1.weight", "self_attn.lf_gate.conv1.bias",
              "self_attn.lf_gate.conv2.weight", "self_attn.lf_gate.conv2.bias",
              "self_attn.lf_gate.output_layernorm.weight", "self_attn.q_proj.weight",
              "self_attn.k_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.weight",
              "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")


def hf_keys(n_layer, lfa=False):
    """LlamaForCausalLM's (YuanForCausalLM's) parameter keys, in its state_dict() order."""
    keys = ["model.embed_tokens.weight"]
    for i in range(n_layer):
        keys += [f"model.layers.{i}.{k}" for k in (YUAN_BLOCK if lfa else LLAMA_BLOCK)]
    return keys + ["model.norm.weight", "lm_head.weight"]


def yuan_expected(key, h5, c):
    """What Yuan's tensor `key` must hold, built from state.h5 head by head (numpy)."""
    C, H = c.d_model, c.n_head
    D = C // H
    _, _, i, rest = key.split(".", 3)
    p = f"model/blocks.{i}."
    qkv = h5[p + "attn.qkv.weight"][()]
    if rest in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
        rows = []
        for h in range(H):  # slice h of the 2C outputs: query head h, then key head h
            rows.append(qkv[h * D:(h + 1) * D])
            rows.append(qkv[C + h * D:C + (h + 1) * D])
        stacked = np.concatenate(rows)
        return stacked[:C] if rest.startswith("self_attn.q_proj") else stacked[C:]
    if rest == "self_attn.v_proj.weight":
        return qkv[2 * C:]
    if rest.startswith("self_attn.lf_gate.conv") and rest.endswith(".weight"):
        w = h5[p + f"attn.lfa.conv{rest[len('self_attn.lf_gate.conv')]}.weight"][()]
        out = np.empty((w.shape[1], w.shape[2], 2, 1), dtype=w.dtype)
        for tap in range(2):  # Conv2d's kernel row 0 meets position t - 1 (padding (1, 0))
            out[:, :, tap, 0] = w[tap]
        return out
    if rest.startswith("self_attn.lf_gate.conv"):
        return h5[p + f"attn.lfa.conv{rest[len('self_attn.lf_gate.conv')]}.bias"][()]
    if rest == "self_attn.lf_gate.output_layernorm.weight":
        return h5[p + "attn.lfa.norm.weight"][()]
    gate_up, F = h5[p + "mlp.gate_up.weight"][()], c.ffn_hidden
    if rest == "mlp.up_proj.weight":  # silu's input: nupipe's first half
        return gate_up[:F]
    if rest == "mlp.gate_proj.weight":
        return gate_up[F:]
    return None


def nupipe_rows(key, c):
    """(nupipe tensor, first row, end row) an HF key comes from; c is torch_llama's config."""
    D = c.d_model // c.n_head
    q, kv, F = c.n_head * D, c.n_kv_head * D, c.ffn_hidden
    if key == "lm_head.weight":
        name = "embed.wte.weight" if c.tie_embeddings else "head.lm.weight"
        return name, None
    if key == "model.embed_tokens.weight":
        return "embed.wte.weight", None
    if key == "model.norm.weight":
        return "head.norm.weight", None
    _, _, i, rest = key.split(".", 3)
    p = f"blocks.{i}."
    return {"self_attn.q_proj.weight": (p + "attn.qkv.weight", (0, q)),
            "self_attn.k_proj.weight": (p + "attn.qkv.weight", (q, q + kv)),
            "self_attn.v_proj.weight": (p + "attn.qkv.weight", (q + kv, q + 2 * kv)),
            "self_attn.o_proj.weight": (p + "attn.proj.weight", None),
            "mlp.gate_proj.weight": (p + "mlp.gate_up.weight", (0, F)),
            "mlp.up_proj.weight": (p + "mlp.gate_up.weight", (F, 2 * F)),
            "mlp.down_proj.weight": (p + "mlp.down.weight", None),
            "input_layernorm.weight": (p + "norm1.weight", None),
            "post_attention_layernorm.weight": (p + "norm2.weight", None)}[rest]


def is_yuan(h5):
    return bool(int(h5.attrs.get("model.lfa", 0)))


def config_from_h5(h5):
    a = h5.attrs
    m = tomllib.loads(str(a["config"]))["model"]
    return torch_llama.LlamaConfig(
        int(a["model.n_layer"]), int(a["model.d_model"]), int(a["model.n_head"]),
        int(a["model.n_kv_head"]), int(a["model.ffn_hidden"]), int(a["model.vocab_size"]),
        int(a["model.seq_len"]), bool(a["model.tie_embeddings"]), float(m["rope_theta"]),
        float(m["norm_eps"]))


def config_from_hf(j):
    yuan = j.get("model_type") == "yuan"  # multi-head, rotary base 10000 in its code
    return torch_llama.LlamaConfig(
        j["num_hidden_layers"], j["hidden_size"], j["num_attention_heads"],
        j["num_attention_heads"] if yuan else j["num_key_value_heads"], j["intermediate_size"],
        j["vocab_size"], j["max_position_embeddings"], j["tie_word_embeddings"],
        torch_yuan.YUAN_ROPE_THETA if yuan else j["rope_theta"], j["rms_norm_eps"])


def check_state_dict(check, sd, h5, c):
    yuan = is_yuan(h5)
    keys = hf_keys(c.n_layer, yuan)
    check(list(sd.keys()) == keys, f"OUT.pt holds exactly the {len(keys)} "
          f"{'Yuan' if yuan else 'Llama'}ForCausalLM keys, "
          f"in state_dict() order (missing {sorted(set(keys) - set(sd))[:3]}, extra "
          f"{sorted(set(sd) - set(keys))[:3]})")
    D = c.d_model // c.n_head
    shapes = {"q_proj": (c.n_head * D, c.d_model), "k_proj": (c.n_kv_head * D, c.d_model),
              "v_proj": (c.n_kv_head * D, c.d_model), "o_proj": (c.d_model, c.d_model),
              "gate_proj": (c.ffn_hidden, c.d_model), "up_proj": (c.ffn_hidden, c.d_model),
              "down_proj": (c.d_model, c.ffn_hidden)}
    bad = []
    for key in keys:
        if key not in sd:
            continue
        t = sd[key]
        want = next((s for k, s in shapes.items() if f".{k}." in key), None)
        ref = yuan_expected(key, h5, c) if yuan and key.startswith("model.layers.") else None
        if ref is None:
            name, rows = nupipe_rows(key, c)
            ref = h5["model/" + name][()]
            ref = ref[rows[0]:rows[1]] if rows else ref
        if (want is not None and tuple(t.shape) != want) or t.dtype != torch.float32 \
                or not t.is_contiguous() or t.numpy().shape != ref.shape \
                or not np.array_equal(t.numpy().view(np.uint32), ref.view(np.uint32)):
            bad.append(key)
    check(not bad, "HF shapes, contiguous float32, every weight bitwise its rows of state.h5"
          + (f": {bad[:3]}" if bad else ""))
    if c.tie_embeddings:
        check(torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"]),
              "tied: lm_head.weight == model.embed_tokens.weight")


def hf_model(sd, j):
    """torch_llama's (torch_yuan's) model, HF's module names, from OUT.pt's keys, float64."""
    cls = torch_yuan.Yuan if j.get("model_type") == "yuan" else torch_llama.Llama
    model = cls(config_from_hf(j)).to(torch.float64)
    own = {k.removeprefix("model."): v.to(torch.float64) for k, v in sd.items()}
    if j["tie_word_embeddings"]:
        own.pop("lm_head.weight")
    model.load_state_dict(own, strict=True)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nupipe", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--val-tol", type=float, default=1e-5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    check = Checks()
    work = os.path.abspath(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run_dir, val_file = os.path.join(work, "run"), os.path.join(work, "val.bin")
    try:
        V = vocab_size(args.config, args.set)
        stream = np.random.default_rng(1234).integers(0, V, size=4097)
        write_token_file(val_file, stream)
        sets = [f"train.steps={args.steps}", f"checkpoint.every={args.steps}",
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
            j = json.load(f)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            last = [json.loads(line) for line in f][-1]
        with h5py.File(os.path.join(ckpt, "state.h5"), "r") as h5:
            effective = tomllib.loads(str(h5.attrs["config"]))
            c = config_from_h5(h5)
            step = int(h5.attrs["step"])
            check_state_dict(check, sd, h5, c)
            ref = torch_yuan if is_yuan(h5) else torch_llama
            kind = "yuan" if is_yuan(h5) else "llama"
            arch = "YuanForCausalLM" if is_yuan(h5) else "LlamaForCausalLM"
            check(config_from_hf(j) == c and j.get("model_type") == kind
                  and j.get("architectures") == [arch]
                  and j.get("hidden_act") == "silu" and j.get("nupipe", {}).get("step") == step,
                  f"OUT.config.json's {arch} config fields match the checkpoint ({c})")
            native = (torch_yuan.Yuan if is_yuan(h5) else torch_llama.Llama)(c).to(torch.float64)
            ref.to_reference(native, {n: h5["model/" + n][()] for n in ref.param_shapes(c)})
        tok, tgt = val_batch(stream, effective)
        with torch.no_grad():
            l_hf, l_np = hf_model(sd, j)(tok, tgt).item(), native(tok, tgt).item()
        e = rel(l_hf, l_np)
        check(e < args.tol, f"validation batch {list(tok.shape)}: loss from OUT.pt {l_hf:.12f}, "
              f"from state.h5 {l_np:.12f}, rel diff {e:.3e} (tol {args.tol:g})")
        l_val = last.get("val_loss")
        e = rel(l_hf, l_val) if l_val is not None and last.get("step") == step else math.inf
        check(e < args.val_tol, f"... and nupipe's val_loss at step {last.get('step')} {l_val}: "
              f"rel diff {e:.3e} (tol {args.val_tol:g})")
    except SetupError as e:
        print(f"SETUP FAILED: {e}", file=sys.stderr)
        return 2
    if check.failures:
        print(f"FAIL: {len(check.failures)} check(s) failed")
        return 1
    print(f"PASS: the {j.get('model_type')} export round-trips the weights and gives nupipe's "
          "validation loss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
