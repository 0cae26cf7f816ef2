#!/usr/bin/python3
"""export_hf.py: converts a nupipe checkpoint's model weights into a Hugging Face GPT-2
state_dict (GPT2LMHeadModel key names and layouts) plus a GPT2Config-style JSON sidecar, or,
for a model.family = "llama" checkpoint, a LlamaForCausalLM state_dict and a LlamaConfig-style
sidecar, and with model.lfa (Yuan 2.0) a YuanForCausalLM state_dict and YuanConfig-style sidecar
under Yuan's own key names (the mappings: scripts/export_hf_llama.py).

    /usr/bin/python3 scripts/export_hf.py RUN_DIR/checkpoints/step_00000400 model.pt
    /usr/bin/python3 scripts/export_hf.py CKPT_DIR OUT.pt [--nupipe PATH] [--no-verify]

Writes OUT.pt (torch.save of an OrderedDict of float32 tensors) and OUT.config.json (a `.pt` or
`.bin` suffix is replaced, any other name gets `.config.json` appended). Load them with

    cfg = GPT2Config(**json.load(open("OUT.config.json")))
    model = GPT2LMHeadModel(cfg); model.load_state_dict(torch.load("OUT.pt"))

or put them in a directory as pytorch_model.bin and config.json for from_pretrained().

Safety: before HDF5 parses a byte of state.h5, the checkpoint is checked against its
manifest.json: structurally here (the manifest names state.h5 with its size, and its regions
tile the file), and every region's XXH3-64 by `nupipe ckpt verify` (Python has no xxhash module
here). The binary is --nupipe PATH, else build/bin/nupipe under the repository root, else
`nupipe` on PATH. --no-verify skips only the checksums, and is UNSAFE: a flipped bit in a weight
is then exported silently. A file that changes between verification and reading is refused.

The mapping (C = d_model; HF's Conv1D stores its weight as [in, out] and computes x @ W + b,
the transpose of nupipe's nn.Linear [out, in] with x @ W^T + b):

    embed.wte.weight           [V, C]   -> transformer.wte.weight           as is
    embed.wpe.weight           [T, C]   -> transformer.wpe.weight           as is
    blocks.i.ln1.{weight,bias}          -> transformer.h.i.ln_1.*           as is
    blocks.i.attn.qkv.weight   [3C, C]  -> transformer.h.i.attn.c_attn.weight  [C, 3C], transposed
    blocks.i.attn.proj.weight  [C, C]   -> transformer.h.i.attn.c_proj.weight  transposed
    blocks.i.ln2.{weight,bias}          -> transformer.h.i.ln_2.*           as is
    blocks.i.mlp.fc.weight     [4C, C]  -> transformer.h.i.mlp.c_fc.weight    [C, 4C], transposed
    blocks.i.mlp.proj.weight   [C, 4C]  -> transformer.h.i.mlp.c_proj.weight  [4C, C], transposed
    every bias                          -> the same module's .bias          as is
    head.ln_f.{weight,bias}             -> transformer.ln_f.*               as is
    head.lm.weight (untied)    [V, C]   -> lm_head.weight                   as is (nn.Linear)
    (tied: lm_head.weight is the same tensor as transformer.wte.weight, as in HF's own
    state_dict)

The math is the same model: HF splits c_attn's output columns as [q | k | v] and head h takes
columns h*D..(h+1)*D of each, like nupipe; attention is scaled by 1/sqrt(D)
(scale_attn_weights); the MLP is 4C wide (n_inner null); GELU is the tanh approximation, which
HF calls "gelu_new" (HF's "gelu" is the erf one and would change the outputs); LayerNorm eps is
the checkpoint's [model] ln_eps. Differences, none of which changes the loss:
  * nupipe has no dropout; the sidecar sets resid/embd/attn_pdrop to 0.0 so even train() mode
    matches (HF's default is 0.1).
  * transformers versions before about 4.31 register the causal mask `attn.bias` and
    `attn.masked_bias` as persistent buffers, so their state_dict() has two more keys per
    block; they are not parameters, and this export does not write them: on those versions
    use load_state_dict(sd, strict=False) and check that only those keys are missing.
  * nupipe has no special tokens, so bos/eos_token_id are null (HF's default 50256 would lie
    outside a small vocabulary); set them yourself before generate().
  * the weights stay float32 as stored; the optimizer state (optim/*) is not exported.
  * n_positions is nupipe's seq_len: longer inputs have no position embedding.

Exit status: 0 written; 2 bad usage (arguments, output directory, no nupipe binary); 4 the
checkpoint is damaged, incomplete or not a nupipe checkpoint (nothing is written); 1 writing
the output failed.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_hf_llama  # noqa: E402

REPO_ROOT = os.path.dirname(HERE)
MANIFEST = "manifest.json"
STATE = "state.h5"
FORMAT = "nupipe-checkpoint"
FORMAT_VERSION = 1


class Refused(Exception):
    """Export refused: `code` is the exit status, the message names the problem, `hint` a fix."""

    def __init__(self, code, msg, hint=""):
        super().__init__(msg)
        self.code, self.hint = code, hint


def bad_checkpoint(msg, hint="export a checkpoint that `nupipe ckpt verify` accepts (an older "
                   "step_* directory of the same run, if this one is damaged)"):
    return Refused(4, msg, hint)


# ---- manifest and checksums -----------------------------------------------------------------

def check_manifest(ckpt):
    """Structural checks of ckpt/manifest.json against state.h5 (no hashing): returns the
    manifest. Raises Refused(4) when the directory is not a committed nupipe checkpoint."""
    if not os.path.isdir(ckpt):
        raise bad_checkpoint(f"{ckpt} is not a directory",
                             "pass a checkpoint directory, RUN_DIR/checkpoints/step_NNNNNNNN")
    path = os.path.join(ckpt, MANIFEST)
    if not os.path.isfile(path):
        steps = sorted(d for d in _listdir(os.path.join(ckpt, "checkpoints"))
                       if re.fullmatch(r"step_\d{8}", d))
        if steps:  # a run directory, not a checkpoint
            raise bad_checkpoint(f"{ckpt} is a run directory, not a checkpoint",
                                 f"pass one of its checkpoints, e.g. the newest: "
                                 f"{os.path.join(ckpt, 'checkpoints', steps[-1])}")
        raise bad_checkpoint(f"{ckpt} has no {MANIFEST}: it is not a committed nupipe checkpoint "
                             "(a save that did not finish leaves none)")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise bad_checkpoint(f"{path} is unreadable or not JSON: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise bad_checkpoint(f"{path} is not a nupipe checkpoint manifest (format is "
                             f"{m.get('format') if isinstance(m, dict) else None!r}, "
                             f"expected {FORMAT!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise bad_checkpoint(f"{path} has format_version {m.get('format_version')!r}; this "
                             f"script reads version {FORMAT_VERSION}",
                             "use the export_hf.py of the nupipe version that wrote it")
    files = m.get("files")
    entry = next((e for e in files if isinstance(e, dict) and e.get("name") == STATE), None) \
        if isinstance(files, list) else None
    if entry is None:
        raise bad_checkpoint(f"{path} lists no {STATE}")
    size = _file_size(os.path.join(ckpt, STATE))
    if entry.get("bytes") != size:
        raise bad_checkpoint(f"{STATE} has {size} bytes, the manifest says {entry.get('bytes')}"
                             if size is not None else f"{ckpt} has no {STATE}")
    end = 0
    for i, r in enumerate(entry.get("regions") or []):
        ok = (isinstance(r, dict) and r.get("offset") == end and isinstance(r.get("bytes"), int)
              and r["bytes"] > 0 and isinstance(r.get("xxh3"), str)
              and re.fullmatch(r"[0-9a-f]{16}", r["xxh3"]))
        if not ok:
            raise bad_checkpoint(f"{path}: region {i} of {STATE} is malformed or does not start "
                                 f"where the previous one ends (byte {end}): {r!r}")
        end += r["bytes"]
    if end != size:
        raise bad_checkpoint(f"{path}: the regions of {STATE} cover {end} of its {size} bytes")
    return m


def find_nupipe(option):
    if option:
        if not (os.path.isfile(option) and os.access(option, os.X_OK)):
            raise Refused(2, f"--nupipe {option} is not an executable file",
                          "point --nupipe at build/bin/nupipe")
        return option
    built = os.path.join(REPO_ROOT, "build", "bin", "nupipe")
    if os.path.isfile(built) and os.access(built, os.X_OK):
        return built
    found = shutil.which("nupipe")
    if found:
        return found
    raise Refused(2, f"no nupipe binary to verify the checksums with (looked for {built} and "
                  "on PATH)", "build nupipe, pass --nupipe PATH, or (unsafe: damage goes "
                  "unnoticed) --no-verify")


def verify_checksums(ckpt, nupipe):
    """`nupipe ckpt verify ckpt`: every region's XXH3-64 against the manifest."""
    try:
        p = subprocess.run([nupipe, "ckpt", "verify", ckpt], capture_output=True, text=True)
    except OSError as e:
        raise Refused(2, f"cannot run {nupipe}: {e}", "pass --nupipe PATH") from None
    if p.returncode != 0:
        tool = (p.stderr.strip() or p.stdout.strip()) or "(no message)"
        code = 4 if p.returncode == 4 else 2  # 4: damaged; anything else: the tool failed
        raise Refused(code, f"`{nupipe} ckpt verify {ckpt}` exited {p.returncode}:\n{tool}",
                      "nothing was exported; export an intact checkpoint" if code == 4 else
                      "is --nupipe a nupipe binary with `ckpt verify`?")
    print(p.stdout.strip(), file=sys.stderr)


# ---- reading state.h5 -----------------------------------------------------------------------

def read_checkpoint(ckpt):
    """(model hyper-parameters, {nupipe tensor name: float32 numpy array}, step) from state.h5,
    with every attribute, name, shape and dtype checked."""
    import h5py
    import numpy as np

    path = os.path.join(ckpt, STATE)
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            hp = _hyper_params(attrs)
            expected = nupipe_shapes(hp)
            group = f.get("model")
            if not isinstance(group, h5py.Group):
                raise bad_checkpoint(f"{path} has no group 'model'")
            extra = sorted(set(group.keys()) - set(expected))
            if extra:
                raise bad_checkpoint(
                    f"{path}: model/ holds tensors this GPT does not have: {extra[:5]}"
                    + (" (head.lm.weight, yet model.tie_embeddings = 1)"
                       if "head.lm.weight" in extra else ""))
            tensors = OrderedDict()
            for name, shape in expected.items():
                ds = group.get(name)
                if not isinstance(ds, h5py.Dataset):
                    raise bad_checkpoint(f"{path}: dataset model/{name} is missing")
                if tuple(ds.shape) != shape or ds.dtype != np.float32:
                    raise bad_checkpoint(f"{path}: model/{name} is {ds.dtype} {tuple(ds.shape)}, "
                                         f"expected float32 {shape}")
                a = ds[()]
                if not np.all(np.isfinite(a)):
                    raise bad_checkpoint(f"{path}: model/{name} holds NaN or Inf")
                tensors[name] = a
    except OSError as e:  # h5py's error for a file HDF5 cannot parse
        raise bad_checkpoint(f"cannot read {path}: {e}") from None
    return hp, tensors, int(attrs["step"])


def _hyper_params(attrs):
    """The model shape from the root attributes, and ln_eps from the stored effective config
    (cross-checked against the attributes)."""
    need = ("step", "format_version", "config", "model.n_layer", "model.d_model", "model.n_head",
            "model.vocab_size", "model.seq_len", "model.tie_embeddings")
    missing = [k for k in need if k not in attrs]
    if missing:
        raise bad_checkpoint(f"{STATE} lacks root attribute(s) {missing}: not a nupipe checkpoint?")
    if int(attrs["format_version"]) != FORMAT_VERSION:
        raise bad_checkpoint(f"{STATE} has format_version {attrs['format_version']}, this script "
                             f"reads {FORMAT_VERSION}")
    hp = {}
    family = attrs.get("model.family", "gpt2")  # absent: written before llama existed
    family = family.decode("utf-8") if isinstance(family, bytes) else str(family)
    if family not in ("gpt2", "llama"):
        raise bad_checkpoint(f"{STATE}: model.family = {family!r} is neither gpt2 nor llama")
    ints = ["n_layer", "d_model", "n_head", "vocab_size", "seq_len", "tie_embeddings"]
    if family == "llama":
        ints += ["n_kv_head", "ffn_hidden"]
        if "model.lfa" in attrs:  # absent: written before model.lfa existed
            ints.append("lfa")
        if any("model." + k not in attrs for k in ("n_kv_head", "ffn_hidden")):
            raise bad_checkpoint(f"{STATE}: a llama checkpoint without model.n_kv_head and "
                                 "model.ffn_hidden")
    for key in ints:
        v = attrs["model." + key]
        try:
            hp[key] = int(v)
            ok = float(v) == hp[key]
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise bad_checkpoint(f"{STATE}: root attribute model.{key} = {v!r} is not an integer")
    for key in ("tie_embeddings", "lfa"):
        if hp.get(key, 0) not in (0, 1):
            raise bad_checkpoint(f"{STATE}: model.{key} = {hp[key]}, not 0 or 1")
        hp[key] = bool(hp.get(key, 0))
    if min(hp[k] for k in ("n_layer", "d_model", "n_head", "vocab_size", "seq_len")) <= 0 \
            or hp["d_model"] % hp["n_head"] != 0:
        raise bad_checkpoint(f"{STATE}: impossible model shape {hp}")
    text = attrs["config"]
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    eps_key = "norm_eps" if family == "llama" else "ln_eps"
    try:
        model = tomllib.loads(text)["model"]
        eps = float(model[eps_key])
        theta = float(model["rope_theta"]) if family == "llama" else None
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise bad_checkpoint(f"{STATE}: the stored config has no readable [model] {eps_key} "
                             f"({e})")
    if not (eps > 0 and math.isfinite(eps)) or (theta is not None and not theta > 0):
        raise bad_checkpoint(f"{STATE}: the stored config's {eps_key} = {eps} (or rope_theta) is "
                             "not positive")
    if family == "llama" and (hp["n_head"] % hp["n_kv_head"] or hp["ffn_hidden"] <= 0
                              or (hp["lfa"] and hp["n_kv_head"] != hp["n_head"])):
        raise bad_checkpoint(f"{STATE}: impossible llama shape {hp}")
    if hp["lfa"] and theta != export_hf_llama.YUAN_ROPE_THETA:
        raise Refused(2, f"{STATE}: rope_theta = {theta:g}, but YuanForCausalLM's code builds its "
                      f"rotary embedding with base {export_hf_llama.YUAN_ROPE_THETA:g} whatever "
                      "config.json says, so the export would not be the same model",
                      "train Yuan models with model.rope_theta = 10000.0")
    for key, v in hp.items():
        # n_kv_head, ffn_hidden = 0 in the config stand for what the attributes record
        if key in ("n_kv_head", "ffn_hidden") and model.get(key) == 0:
            continue
        if key in model and model[key] != v:
            raise bad_checkpoint(f"{STATE}: the stored config says model.{key} = {model[key]!r} "
                                 f"but the attribute says {v!r}")
    hp["family"] = family
    hp[eps_key] = eps
    if theta is not None:
        hp["rope_theta"] = theta
    return hp


def nupipe_shapes(hp):
    """nupipe's parameter names and shapes (tests/reference/torch_gpt.py, param_shapes)."""
    if hp["family"] == "llama":
        return export_hf_llama.nupipe_shapes(hp)
    C, V, T = hp["d_model"], hp["vocab_size"], hp["seq_len"]
    s = OrderedDict([("embed.wte.weight", (V, C)), ("embed.wpe.weight", (T, C))])
    for i in range(hp["n_layer"]):
        p = f"blocks.{i}."
        for name, shape in (("ln1.weight", (C,)), ("ln1.bias", (C,)),
                            ("attn.qkv.weight", (3 * C, C)), ("attn.qkv.bias", (3 * C,)),
                            ("attn.proj.weight", (C, C)), ("attn.proj.bias", (C,)),
                            ("ln2.weight", (C,)), ("ln2.bias", (C,)),
                            ("mlp.fc.weight", (4 * C, C)), ("mlp.fc.bias", (4 * C,)),
                            ("mlp.proj.weight", (C, 4 * C)), ("mlp.proj.bias", (C,))):
            s[p + name] = shape
    s["head.ln_f.weight"] = (C,)
    s["head.ln_f.bias"] = (C,)
    if not hp["tie_embeddings"]:
        s["head.lm.weight"] = (V, C)
    return s


# ---- the Hugging Face layout ----------------------------------------------------------------

# Per block: (nupipe suffix, HF suffix, transpose?), in the order of HF's state_dict().
BLOCK_MAP = (
    ("ln1.weight", "ln_1.weight", False), ("ln1.bias", "ln_1.bias", False),
    ("attn.qkv.weight", "attn.c_attn.weight", True), ("attn.qkv.bias", "attn.c_attn.bias", False),
    ("attn.proj.weight", "attn.c_proj.weight", True), ("attn.proj.bias", "attn.c_proj.bias", False),
    ("ln2.weight", "ln_2.weight", False), ("ln2.bias", "ln_2.bias", False),
    ("mlp.fc.weight", "mlp.c_fc.weight", True), ("mlp.fc.bias", "mlp.c_fc.bias", False),
    ("mlp.proj.weight", "mlp.c_proj.weight", True), ("mlp.proj.bias", "mlp.c_proj.bias", False),
)


def to_hf(hp, tensors):
    """OrderedDict of HF GPT2LMHeadModel keys -> contiguous float32 torch tensors."""
    import torch

    if hp["family"] == "llama":
        return export_hf_llama.to_hf(hp, tensors)
    def t(name, transpose=False):
        x = torch.from_numpy(tensors[name])
        return x.t().contiguous() if transpose else x

    sd = OrderedDict()
    sd["transformer.wte.weight"] = t("embed.wte.weight")
    sd["transformer.wpe.weight"] = t("embed.wpe.weight")
    for i in range(hp["n_layer"]):
        for src, dst, transpose in BLOCK_MAP:
            sd[f"transformer.h.{i}.{dst}"] = t(f"blocks.{i}.{src}", transpose)
    sd["transformer.ln_f.weight"] = t("head.ln_f.weight")
    sd["transformer.ln_f.bias"] = t("head.ln_f.bias")
    sd["lm_head.weight"] = (sd["transformer.wte.weight"] if hp["tie_embeddings"]
                            else t("head.lm.weight"))
    return sd


def hf_config(hp, step, ckpt):
    """GPT2Config fields (what config.json holds) plus a `nupipe` record of the source."""
    if hp["family"] == "llama":
        cfg = export_hf_llama.hf_config(hp)
        cfg["nupipe"] = OrderedDict([("step", step), ("checkpoint", os.path.abspath(ckpt))])
        return cfg
    return OrderedDict([
        ("model_type", "gpt2"),
        ("architectures", ["GPT2LMHeadModel"]),
        ("vocab_size", hp["vocab_size"]),
        ("n_positions", hp["seq_len"]),
        ("n_ctx", hp["seq_len"]),  # read by old transformers versions
        ("n_embd", hp["d_model"]),
        ("n_layer", hp["n_layer"]),
        ("n_head", hp["n_head"]),
        ("n_inner", None),  # 4 * n_embd
        ("activation_function", "gelu_new"),  # the tanh GELU
        ("layer_norm_epsilon", hp["ln_eps"]),
        ("tie_word_embeddings", hp["tie_embeddings"]),
        ("resid_pdrop", 0.0), ("embd_pdrop", 0.0), ("attn_pdrop", 0.0),
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False),
        ("bos_token_id", None), ("eos_token_id", None),
        ("torch_dtype", "float32"),
        ("nupipe", OrderedDict([("step", step), ("checkpoint", os.path.abspath(ckpt))])),
    ])


def config_path(out):
    root, ext = os.path.splitext(out)
    return (root if ext in (".pt", ".bin") else out) + ".config.json"


def write_outputs(out, sd, cfg):
    """Both files to temporary names first, renamed into place only once both are written."""
    import torch

    cfg_out = config_path(out)
    tmps = (out + ".tmp", cfg_out + ".tmp")
    try:
        torch.save(sd, tmps[0])
        _write_text(tmps[1], json.dumps(cfg, indent=2) + "\n")
        os.replace(tmps[1], cfg_out)
        os.replace(tmps[0], out)
    except (OSError, RuntimeError) as e:  # torch.save reports some I/O errors as RuntimeError
        for tmp in tmps:
            _remove(tmp)
        raise Refused(1, f"cannot write {out} / {cfg_out}: {e}",
                      "check the disk space and permissions") from None
    return cfg_out


# ---- helpers --------------------------------------------------------------------------------

def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _file_size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _stamp(path):
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns, st.st_ino
    except OSError:
        return None


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", metavar="CKPT_DIR", help="RUN_DIR/checkpoints/step_NNNNNNNN")
    ap.add_argument("out", metavar="OUT.pt", help="the state_dict to write")
    ap.add_argument("--nupipe", metavar="PATH",
                    help="nupipe binary for `ckpt verify` (default: build/bin/nupipe under the "
                         "repository root, then PATH)")
    ap.add_argument("--no-verify", action="store_true",
                    help="UNSAFE: skip the checksum verification (damage is exported silently)")
    args = ap.parse_args(argv)

    try:
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(out_dir):
            raise Refused(2, f"the output directory {out_dir} does not exist", "create it first")
        if os.path.isdir(args.out):
            raise Refused(2, f"{args.out} is a directory", "name the file to write, e.g. model.pt")
        check_manifest(args.ckpt)
        state = os.path.join(args.ckpt, STATE)
        before = _stamp(state)
        if args.no_verify:
            print(f"export_hf: WARNING: --no-verify: the checksums of {args.ckpt} are NOT checked",
                  file=sys.stderr)
        else:
            verify_checksums(args.ckpt, find_nupipe(args.nupipe))
        hp, tensors, step = read_checkpoint(args.ckpt)
        if _stamp(state) != before:
            raise bad_checkpoint(f"{state} changed while it was being exported",
                                 "export again once nothing writes to the checkpoint")
        sd = to_hf(hp, tensors)
        cfg_out = write_outputs(args.out, sd, hf_config(hp, step, args.ckpt))
    except Refused as e:
        print(f"export_hf: error: {e}", file=sys.stderr)
        if e.hint:
            print(f"HINT: {e.hint}", file=sys.stderr)
        return e.code
    n_params = sum(a.size for a in tensors.values())
    print(f"export_hf: wrote {args.out} ({len(sd)} tensors, {n_params} parameters, step {step}, "
          f"{'tied' if hp['tie_embeddings'] else 'untied'} head) and {cfg_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
