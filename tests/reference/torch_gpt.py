"""torch_gpt.py: an independent PyTorch implementation of nupipe's GPT (same parameter names,
shapes and math), and the reader for the reference files that `dump_reference` writes.

The model, in the notation of nupipe's parameter names (C = d_model, V = vocab_size,
T = seq_len, D = C / n_head):

    x = embed.wte[tokens] + embed.wpe[0..T-1]
    per block:  x = x + attn.proj(attention(ln1(x)))
                x = x + mlp.proj(gelu_tanh(mlp.fc(ln2(x))))
    logits = head.ln_f(x) @ W^T,   W = head.lm.weight, or embed.wte.weight when tied
    loss = mean cross-entropy over all B*T targets

Linear layers follow nn.Linear (y = x W^T + b); attn.qkv's output columns are [q | k | v] and
head h uses columns h*D..(h+1)*D of each; attention is causal softmax(q k^T / sqrt(D)) v.
LayerNorm uses the biased variance and eps = ln_eps.

Used by check_reference.py (float64, gradients by autograd). scripts/bench/torch_step.py has
its own nanoGPT-style model for timed training steps.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    n_layer: int
    d_model: int
    n_head: int
    vocab_size: int
    seq_len: int
    tie_embeddings: bool = True
    ln_eps: float = 1e-5

    def validate(self):
        for key in ("n_layer", "d_model", "n_head", "vocab_size", "seq_len"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} = {getattr(self, key)} must be positive")
        if self.d_model % self.n_head != 0:
            raise ValueError(f"d_model = {self.d_model} is not a multiple of n_head = {self.n_head}")
        if not self.ln_eps > 0:
            raise ValueError(f"ln_eps = {self.ln_eps} must be positive")


def param_shapes(cfg: GPTConfig) -> "OrderedDict[str, tuple]":
    """Every parameter's name and shape, in model order (the names nupipe uses)."""
    C, V, T = cfg.d_model, cfg.vocab_size, cfg.seq_len
    shapes = OrderedDict()
    shapes["embed.wte.weight"] = (V, C)
    shapes["embed.wpe.weight"] = (T, C)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        shapes[p + "ln1.weight"] = (C,)
        shapes[p + "ln1.bias"] = (C,)
        shapes[p + "attn.qkv.weight"] = (3 * C, C)
        shapes[p + "attn.qkv.bias"] = (3 * C,)
        shapes[p + "attn.proj.weight"] = (C, C)
        shapes[p + "attn.proj.bias"] = (C,)
        shapes[p + "ln2.weight"] = (C,)
        shapes[p + "ln2.bias"] = (C,)
        shapes[p + "mlp.fc.weight"] = (4 * C, C)
        shapes[p + "mlp.fc.bias"] = (4 * C,)
        shapes[p + "mlp.proj.weight"] = (C, 4 * C)
        shapes[p + "mlp.proj.bias"] = (C,)
    shapes["head.ln_f.weight"] = (C,)
    shapes["head.ln_f.bias"] = (C,)
    if not cfg.tie_embeddings:
        shapes["head.lm.weight"] = (V, C)
    return shapes


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=-1)  # columns [q | k | v]
        # head h takes columns h*D..(h+1)*D: [B, T, C] -> [B, H, T, D]
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # [B, H, T, T]
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v  # [B, H, T, D]
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Embedding(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model)

    def forward(self, tokens):
        T = tokens.shape[1]
        return self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))


class Head(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        if not cfg.tie_embeddings:
            self.lm = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)


class GPT(nn.Module):
    """named_parameters() yields exactly param_shapes(cfg), names and shapes."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = Embedding(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.head = Head(cfg)

    def init_weights(self, std=0.02, generator=None):
        """N(0, std) weights, residual projections N(0, std / sqrt(2 n_layer)), zero biases,
        unit LayerNorm gains (the GPT-2 scheme nupipe uses)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(".bias"):
                    p.zero_()
                elif ".ln" in name:  # ln1, ln2, ln_f gains
                    p.fill_(1.0)
                else:
                    s = std / math.sqrt(2 * self.cfg.n_layer) if name.endswith("proj.weight") else std
                    p.normal_(0.0, s, generator=generator)
        return self

    def lm_weight(self):
        return self.embed.wte.weight if self.cfg.tie_embeddings else self.head.lm.weight

    def forward(self, tokens, targets):
        """tokens, targets: int64 [B, T] with T <= seq_len. Returns the mean cross-entropy."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        logits = self.head.ln_f(x) @ self.lm_weight().t()  # [B, T, V]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


# ---- reference files -----------------------------------------------------------------------

CONFIG_ATTRS = ("n_layer", "d_model", "n_head", "vocab_size", "seq_len", "tie_embeddings", "ln_eps")


class MalformedFile(Exception):
    """The reference file lacks something or holds something of the wrong shape or type."""


def _require(cond, msg):
    if not cond:
        raise MalformedFile(msg)


def read_config(h5file) -> GPTConfig:
    attrs = h5file.attrs
    for key in CONFIG_ATTRS:
        _require(key in attrs, f"root attribute '{key}' is missing")
    ints = {}
    for key in ("n_layer", "d_model", "n_head", "vocab_size", "seq_len", "tie_embeddings"):
        v = attrs[key]
        _require(float(v) == int(v), f"root attribute '{key}' = {v} is not an integer")
        ints[key] = int(v)
    _require(ints["tie_embeddings"] in (0, 1), "root attribute 'tie_embeddings' must be 0 or 1")
    cfg = GPTConfig(ints["n_layer"], ints["d_model"], ints["n_head"], ints["vocab_size"],
                    ints["seq_len"], bool(ints["tie_embeddings"]), float(attrs["ln_eps"]))
    try:
        cfg.validate()
    except ValueError as e:
        raise MalformedFile(f"bad model attributes: {e}") from None
    return cfg


def read_batch(h5file, cfg: GPTConfig):
    """batch/tokens and batch/targets as int64 tensors [B, T]."""
    out = []
    for name in ("batch/tokens", "batch/targets"):
        _require(name in h5file, f"dataset '{name}' is missing")
        a = h5file[name][()]
        _require(a.ndim == 2 and a.shape[0] > 0 and 0 < a.shape[1] <= cfg.seq_len,
                 f"dataset '{name}' has shape {a.shape}, expected [B, T] with T <= seq_len = {cfg.seq_len}")
        _require(a.dtype.kind in "iu", f"dataset '{name}' has dtype {a.dtype}, expected int32")
        _require(a.min() >= 0 and a.max() < cfg.vocab_size,
                 f"dataset '{name}' holds ids outside [0, {cfg.vocab_size})")
        out.append(torch.from_numpy(a.astype("int64")))
    _require(out[0].shape == out[1].shape, "batch/tokens and batch/targets differ in shape")
    return out[0], out[1]


def load_params(model: GPT, h5file, group="model"):
    """Copies group/<name> into every parameter; the group must hold exactly the model's
    parameters with their shapes."""
    expected = param_shapes(model.cfg)
    _require(group in h5file, f"group '{group}' is missing")
    stored = set(h5file[group].keys())
    extra = sorted(stored - set(expected))
    _require(not extra, f"'{group}' holds tensors the model does not have: {extra[:5]}"
             + (" (head.lm.weight with tie_embeddings=1?)" if "head.lm.weight" in extra else ""))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, shape in expected.items():
            path = f"{group}/{name}"
            _require(path in h5file, f"dataset '{path}' is missing")
            a = h5file[path][()]
            _require(tuple(a.shape) == shape, f"dataset '{path}' has shape {tuple(a.shape)}, expected {shape}")
            _require(a.dtype.kind == "f", f"dataset '{path}' has dtype {a.dtype}, expected float32")
            params[name].copy_(torch.from_numpy(a))


def reference_loss_and_grads(h5file, dtype=torch.float64):
    """Builds the model from the file's attributes and parameters, runs forward and backward on
    its batch in `dtype`. Returns (cfg, loss, {name: grad})."""
    cfg = read_config(h5file)
    model = GPT(cfg).to(dtype)
    load_params(model, h5file)
    tokens, targets = read_batch(h5file, cfg)
    model.zero_grad(set_to_none=True)
    loss = model(tokens, targets)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return cfg, loss.item(), grads
