"""torch_yuan.py: an independent PyTorch Yuan 2.0 decoder, written from the public definition
(IEIT-Yuan's Hugging Face YuanForCausalLM: LocalizedFiltering as two Conv2d over the sequence,
q and k from the filtered input and v from the block's input, query and key heads cut from the
concatenated q_proj and k_proj outputs, the MLP `down(gate(x) * silu(up(x)))`), and its mapping
to and from nupipe's parameter names for the files `dump_reference` writes (model.lfa = true).

    per layer:  h = input_layernorm(x)
                f = lf_gate(h) = RMSNorm_1e-6(conv2(conv1(h)) + h), each conv (2, 1) with
                    padding (1, 0) over [B, C, T, 1], the first T outputs kept (t sees t-1, t)
                qk = cat(q_proj(f), k_proj(f)) viewed [B, T, H, 2D]; q, k = its two halves
                x = x + o_proj(attention(rope(q), rope(k), v_proj(h)))
                x = x + down_proj(gate_proj(g) * silu(up_proj(g))), g = post_attention_layernorm(x)

Where nupipe's layout differs (to_reference and from_reference convert):
  - nupipe's qkv rows are [q heads | k heads | v]; Yuan's query head i is rows [2Di, 2Di + D)
    of vstack(q_proj, k_proj) and its key head i rows [2Di + D, 2Di + 2D);
  - nupipe's gate_up rows [0, F) are SwiGLU's silu input: Yuan's up_proj; [F, 2F) its gate_proj;
  - nupipe's convolution weight [2, out, in] (tap 0 at t - 1) is Conv2d's [out, in, 2, 1].
"""

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_llama
from torch_llama import LlamaConfig, RMSNorm, rotary, rotate_half

LFA_EPS = 1e-6  # YuanRMSNorm's default, which LocalizedFiltering's output_layernorm keeps
YUAN_ROPE_THETA = 10000.0  # YuanRotaryEmbedding's base in its code (config.json has no key for it)


def param_shapes(cfg: LlamaConfig) -> "OrderedDict[str, tuple]":
    """nupipe's parameter names and shapes for a llama config with model.lfa."""
    C = cfg.d_model
    shapes = OrderedDict()
    for name, shape in torch_llama.param_shapes(cfg).items():
        shapes[name] = shape
        if name.endswith("attn.proj.weight"):
            p = name[: -len("proj.weight")] + "lfa."
            shapes[p + "conv1.weight"] = (2, C // 2, C)
            shapes[p + "conv1.bias"] = (C // 2,)
            shapes[p + "conv2.weight"] = (2, C, C // 2)
            shapes[p + "conv2.bias"] = (C,)
            shapes[p + "norm.weight"] = (C,)
    return shapes


class LocalizedFiltering(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.conv1 = nn.Conv2d(C, C // 2, (2, 1), stride=(1, 1), padding=(1, 0))
        self.conv2 = nn.Conv2d(C // 2, C, (2, 1), stride=(1, 1), padding=(1, 0))
        self.output_layernorm = RMSNorm(C, LFA_EPS)

    def forward(self, x):  # x [B, T, C]
        B, T, C = x.shape
        seq = x.transpose(0, 1)  # [T, B, C], Yuan's sequence-first layout
        inp = seq.reshape(T, 1, B, C).permute(2, 3, 0, 1)  # [B, C, T, 1]
        o1 = self.conv1(inp)[:, :, :T, :]
        o2 = self.conv2(o1)[:, :, :T, :].permute(2, 3, 0, 1).reshape(T, B, C)
        return self.output_layernorm(o2 + seq).transpose(0, 1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.d_model
        self.H, self.D = cfg.n_head, C // cfg.n_head
        self.lf_gate = LocalizedFiltering(C)
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        v = self.v_proj(x).view(B, T, self.H, self.D).transpose(1, 2)
        f = self.lf_gate(x)
        qk = torch.cat((self.q_proj(f), self.k_proj(f)), dim=-1).view(B, T, self.H, 2 * self.D)
        q, k = (t.transpose(1, 2) for t in torch.chunk(qk, 2, dim=-1))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.D)
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
        y = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(self.gate_proj(x) * F.silu(self.up_proj(x)))


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


class Yuan(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        cfg.validate()
        if cfg.n_kv_head != cfg.n_head or cfg.d_model % 2:
            raise ValueError("Yuan 2.0 is multi-head with an even width")
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


def yuan_qk(qk, H):
    """nupipe's q and k rows [q heads | k heads] (2C x C) -> vstack(q_proj, k_proj) of Yuan's
    interleaved layout (query head i then key head i, 2D rows per head)."""
    C = qk.shape[1]
    return qk.reshape(2, H, -1, C).transpose(0, 1).reshape(-1, C)


def nupipe_qk(stacked, H):
    """The inverse of yuan_qk."""
    C = stacked.shape[1]
    return stacked.reshape(H, 2, -1, C).transpose(0, 1).reshape(-1, C)


def conv_to_yuan(w):
    """[2, out, in] (tap 0 at t - 1) -> Conv2d's [out, in, 2, 1]."""
    return w.permute(1, 2, 0).unsqueeze(-1)


def conv_to_nupipe(w):
    return w.squeeze(-1).permute(2, 0, 1)


def to_reference(model: Yuan, tensors):
    """Copies nupipe's tensors (name -> array, param_shapes' names) into the model."""
    cfg = model.cfg
    C, F_ = cfg.d_model, cfg.ffn_hidden
    with torch.no_grad():
        t = {n: torch.as_tensor(a, dtype=model.embed_tokens.weight.dtype) for n, a in tensors.items()}
        model.embed_tokens.weight.copy_(t["embed.wte.weight"])
        for i, layer in enumerate(model.layers):
            p, a = f"blocks.{i}.", layer.self_attn
            qkv = t[p + "attn.qkv.weight"]
            stacked = yuan_qk(qkv[: 2 * C], cfg.n_head)
            a.q_proj.weight.copy_(stacked[:C])
            a.k_proj.weight.copy_(stacked[C:])
            a.v_proj.weight.copy_(qkv[2 * C:])
            a.o_proj.weight.copy_(t[p + "attn.proj.weight"])
            for conv in ("conv1", "conv2"):
                getattr(a.lf_gate, conv).weight.copy_(conv_to_yuan(t[p + f"attn.lfa.{conv}.weight"]))
                getattr(a.lf_gate, conv).bias.copy_(t[p + f"attn.lfa.{conv}.bias"])
            a.lf_gate.output_layernorm.weight.copy_(t[p + "attn.lfa.norm.weight"])
            layer.input_layernorm.weight.copy_(t[p + "norm1.weight"])
            layer.post_attention_layernorm.weight.copy_(t[p + "norm2.weight"])
            gu = t[p + "mlp.gate_up.weight"]
            layer.mlp.up_proj.weight.copy_(gu[:F_])
            layer.mlp.gate_proj.weight.copy_(gu[F_:])
            layer.mlp.down_proj.weight.copy_(t[p + "mlp.down.weight"])
        model.norm.weight.copy_(t["head.norm.weight"])
        if not cfg.tie_embeddings:
            model.lm_head.weight.copy_(t["head.lm.weight"])


def from_reference(model: Yuan):
    """The model's gradients under nupipe's names and layouts."""
    cfg = model.cfg
    g = OrderedDict()
    g["embed.wte.weight"] = model.embed_tokens.weight.grad
    for i, layer in enumerate(model.layers):
        p, a, m = f"blocks.{i}.", layer.self_attn, layer.mlp
        g[p + "norm1.weight"] = layer.input_layernorm.weight.grad
        qk = nupipe_qk(torch.cat((a.q_proj.weight.grad, a.k_proj.weight.grad)), cfg.n_head)
        g[p + "attn.qkv.weight"] = torch.cat((qk, a.v_proj.weight.grad))
        g[p + "attn.proj.weight"] = a.o_proj.weight.grad
        for conv in ("conv1", "conv2"):
            g[p + f"attn.lfa.{conv}.weight"] = conv_to_nupipe(getattr(a.lf_gate, conv).weight.grad)
            g[p + f"attn.lfa.{conv}.bias"] = getattr(a.lf_gate, conv).bias.grad
        g[p + "attn.lfa.norm.weight"] = a.lf_gate.output_layernorm.weight.grad
        g[p + "norm2.weight"] = layer.post_attention_layernorm.weight.grad
        g[p + "mlp.gate_up.weight"] = torch.cat((m.up_proj.weight.grad, m.gate_proj.weight.grad))
        g[p + "mlp.down.weight"] = m.down_proj.weight.grad
    g["head.norm.weight"] = model.norm.weight.grad
    if not cfg.tie_embeddings:
        g["head.lm.weight"] = model.lm_head.weight.grad
    return OrderedDict((n, t.detach().clone()) for n, t in g.items())


def reference_loss_and_grads(h5file, dtype=torch.float64):
    """torch_llama.reference_loss_and_grads for a file with lfa = 1: (cfg, loss, {name: grad})."""
    return torch_llama.reference_loss_and_grads(h5file, dtype, Yuan, param_shapes, to_reference,
                                                from_reference)
