"""torch_llama.py: an independent PyTorch Llama (the public Hugging Face LlamaForCausalLM
definition, written out: separate q/k/v/o and gate/up/down projections, RMSNorm, rotary
embeddings by rotate_half, key/value heads repeated for grouped-query attention), and its
mapping to and from nupipe's parameter names for the reference files `dump_reference` writes.

    x = embed_tokens[tokens]
    per layer:  x = x + o_proj(attention(rope(q_proj(h)), rope(k_proj(h)), v_proj(h))),
                    h = input_layernorm(x)
                x = x + down_proj(silu(gate_proj(h)) * up_proj(h)), h = post_attention_layernorm(x)
    logits = lm_head(norm(x))  (lm_head = embed_tokens when tied)

nupipe stores q, k, v as one matrix (rows [q | k | v], heads in order) and gate, up as one
(rows [gate | up]); to_reference() cuts them apart, from_reference() puts gradients back.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    n_layer: int
    d_model: int
    n_head: int
    n_kv_head: int
    ffn_hidden: int
    vocab_size: int
    seq_len: int
    tie_embeddings: bool
    rope_theta: float
    norm_eps: float

    def validate(self):
        for key in ("n_layer", "d_model", "n_head", "n_kv_head", "ffn_hidden", "vocab_size",
                    "seq_len"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} = {getattr(self, key)} must be positive")
        if self.d_model % self.n_head or self.n_head % self.n_kv_head:
            raise ValueError("n_head must divide d_model and n_kv_head n_head")
        if (self.d_model // self.n_head) % 2:
            raise ValueError("the head size must be even")


def param_shapes(cfg: LlamaConfig) -> "OrderedDict[str, tuple]":
    """nupipe's parameter names and shapes for a llama config."""
    C, V, F_, D = cfg.d_model, cfg.vocab_size, cfg.ffn_hidden, cfg.d_model // cfg.n_head
    Q = (cfg.n_head + 2 * cfg.n_kv_head) * D
    shapes = OrderedDict()
    shapes["embed.wte.weight"] = (V, C)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        shapes[p + "norm1.weight"] = (C,)
        shapes[p + "attn.qkv.weight"] = (Q, C)
        shapes[p + "attn.proj.weight"] = (C, C)
        shapes[p + "norm2.weight"] = (C,)
        shapes[p + "mlp.gate_up.weight"] = (2 * F_, C)
        shapes[p + "mlp.down.weight"] = (C, F_)
    shapes["head.norm.weight"] = (C,)
    if not cfg.tie_embeddings:
        shapes["head.lm.weight"] = (V, C)
    return shapes


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary(T, D, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def repeat_kv(x, n_rep):
    """[B, Hkv, T, D] -> [B, Hkv * n_rep, T, D], each key/value head repeated n_rep times."""
    B, H, T, D = x.shape
    return x[:, :, None].expand(B, H, n_rep, T, D).reshape(B, H * n_rep, T, D)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.H, self.Hkv, self.D = cfg.n_head, cfg.n_kv_head, cfg.d_model // cfg.n_head
        self.q_proj = nn.Linear(cfg.d_model, self.H * self.D, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, self.Hkv * self.D, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, self.Hkv * self.D, bias=False)
        self.o_proj = nn.Linear(self.H * self.D, cfg.d_model, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.H // self.Hkv), repeat_kv(v, self.H // self.Hkv)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.D)
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
        y = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.D))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        cos, sin = rotary(T, self.cfg.d_model // self.cfg.n_head, self.cfg.rope_theta,
                          self.embed_tokens.weight.dtype)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        w = self.embed_tokens.weight if self.cfg.tie_embeddings else self.lm_head.weight
        logits = self.norm(x) @ w.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _cuts(cfg):
    D = cfg.d_model // cfg.n_head
    return cfg.n_head * D, cfg.n_kv_head * D


def to_reference(model: Llama, tensors):
    """Copies nupipe's tensors (name -> array, param_shapes' names) into the model."""
    cfg = model.cfg
    q, kv = _cuts(cfg)
    F_ = cfg.ffn_hidden
    with torch.no_grad():
        t = {n: torch.as_tensor(a, dtype=model.embed_tokens.weight.dtype) for n, a in tensors.items()}
        model.embed_tokens.weight.copy_(t["embed.wte.weight"])
        for i, layer in enumerate(model.layers):
            p = f"blocks.{i}."
            qkv = t[p + "attn.qkv.weight"]
            layer.self_attn.q_proj.weight.copy_(qkv[:q])
            layer.self_attn.k_proj.weight.copy_(qkv[q:q + kv])
            layer.self_attn.v_proj.weight.copy_(qkv[q + kv:])
            layer.self_attn.o_proj.weight.copy_(t[p + "attn.proj.weight"])
            layer.input_layernorm.weight.copy_(t[p + "norm1.weight"])
            layer.post_attention_layernorm.weight.copy_(t[p + "norm2.weight"])
            gu = t[p + "mlp.gate_up.weight"]
            layer.mlp.gate_proj.weight.copy_(gu[:F_])
            layer.mlp.up_proj.weight.copy_(gu[F_:])
            layer.mlp.down_proj.weight.copy_(t[p + "mlp.down.weight"])
        model.norm.weight.copy_(t["head.norm.weight"])
        if not cfg.tie_embeddings:
            model.lm_head.weight.copy_(t["head.lm.weight"])


def from_reference(model: Llama):
    """The model's gradients under nupipe's names (q/k/v and gate/up stacked back)."""
    cfg = model.cfg
    g = OrderedDict()
    g["embed.wte.weight"] = model.embed_tokens.weight.grad
    for i, layer in enumerate(model.layers):
        p = f"blocks.{i}."
        a, m = layer.self_attn, layer.mlp
        g[p + "norm1.weight"] = layer.input_layernorm.weight.grad
        g[p + "attn.qkv.weight"] = torch.cat((a.q_proj.weight.grad, a.k_proj.weight.grad,
                                              a.v_proj.weight.grad))
        g[p + "attn.proj.weight"] = a.o_proj.weight.grad
        g[p + "norm2.weight"] = layer.post_attention_layernorm.weight.grad
        g[p + "mlp.gate_up.weight"] = torch.cat((m.gate_proj.weight.grad, m.up_proj.weight.grad))
        g[p + "mlp.down.weight"] = m.down_proj.weight.grad
    g["head.norm.weight"] = model.norm.weight.grad
    if not cfg.tie_embeddings:
        g["head.lm.weight"] = model.lm_head.weight.grad
    return OrderedDict((n, t.detach().clone()) for n, t in g.items())


def reference_loss_and_grads(h5file, dtype=torch.float64, model_class=None, shapes_of=None,
                             load=None, grads_of=None):
    """The llama counterpart of torch_gpt.reference_loss_and_grads: (cfg, loss, {name: grad}).
    torch_yuan.py passes its own model class and name mapping (the file format is the same)."""
    model_class, shapes_of = model_class or Llama, shapes_of or param_shapes
    load, grads_of = load or to_reference, grads_of or from_reference
    from torch_gpt import MalformedFile, read_batch  # the file format is shared

    a = h5file.attrs
    for key in ("n_layer", "d_model", "n_head", "n_kv_head", "ffn_hidden", "vocab_size",
                "seq_len", "tie_embeddings", "rope_theta", "norm_eps"):
        if key not in a:
            raise MalformedFile(f"root attribute '{key}' is missing")
    cfg = LlamaConfig(int(a["n_layer"]), int(a["d_model"]), int(a["n_head"]), int(a["n_kv_head"]),
                      int(a["ffn_hidden"]), int(a["vocab_size"]), int(a["seq_len"]),
                      bool(int(a["tie_embeddings"])), float(a["rope_theta"]), float(a["norm_eps"]))
    try:
        cfg.validate()
    except ValueError as e:
        raise MalformedFile(f"bad model attributes: {e}") from None
    expected = shapes_of(cfg)
    stored = set(h5file["model"].keys()) if "model" in h5file else set()
    if stored != set(expected):
        raise MalformedFile(f"'model' holds {sorted(stored ^ set(expected))[:5]} unlike a "
                            "llama of these attributes")
    tensors = {}
    for name, shape in expected.items():
        arr = h5file[f"model/{name}"][()]
        if tuple(arr.shape) != shape:
            raise MalformedFile(f"model/{name} has shape {arr.shape}, expected {shape}")
        tensors[name] = arr
    try:
        model = model_class(cfg).to(dtype)
    except ValueError as e:
        raise MalformedFile(f"bad model attributes: {e}") from None
    load(model, tensors)
    tokens, targets = read_batch(h5file, cfg)
    model.zero_grad(set_to_none=True)
    loss = model(tokens, targets)
    loss.backward()
    return cfg, loss.item(), grads_of(model)
