"""torch_step_llama.py: the Llama-style decoder torch_step.py times for `--family llama` (the
model nupipe's llama family trains), written for eager speed: one fused q/k/v nn.Linear and one
fused gate/up nn.Linear (the same math as separate projections, fewer and larger GEMMs),
RMSNorm with fp32 statistics, rotary embeddings by rotate_half from a precomputed cos/sin
table, grouped-query attention (F.scaled_dot_product_attention with enable_gqa where this torch
has it; otherwise the key/value heads expanded as Hugging Face's repeat_kv does and a masked
softmax), a SwiGLU MLP, no biases, an untied or tied head, GPT-2's initialisation.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def _sdpa_gqa():
    if not HAS_SDPA:
        return False
    try:
        q, kv = torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2)
        F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
        return True
    except (TypeError, RuntimeError):
        return False


SDPA_GQA = _sdpa_gqa()


def attention_kind():
    if SDPA_GQA:
        return "sdpa-gqa"
    return "sdpa, kv repeated" if HAS_SDPA else "masked-softmax, kv repeated"


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, d_model, n_head, n_kv_head, seq_len):
        super().__init__()
        self.H, self.K, self.D = n_head, n_kv_head, d_model // n_head
        self.qkv = nn.Linear(d_model, (n_head + 2 * n_kv_head) * self.D, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        if not HAS_SDPA:
            mask = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(diagonal=1)
            self.register_buffer("future", mask, persistent=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split((self.H * self.D, self.K * self.D, self.K * self.D), dim=-1)
        q = q.view(B, T, self.H, self.D).transpose(1, 2)
        k = k.view(B, T, self.K, self.D).transpose(1, 2)
        v = v.view(B, T, self.K, self.D).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # bf16 under autocast
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if SDPA_GQA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            rep = self.H // self.K
            if rep > 1:  # Hugging Face's repeat_kv
                k = k[:, :, None].expand(B, self.K, rep, T, self.D).reshape(B, self.H, T, self.D)
                v = v[:, :, None].expand(B, self.K, rep, T, self.D).reshape(B, self.H, T, self.D)
            if HAS_SDPA:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.D))
                att = att.masked_fill(self.future[:T, :T], float("-inf"))
                y = F.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d_model, ffn_hidden):
        super().__init__()
        self.F = ffn_hidden
        self.gate_up = nn.Linear(d_model, 2 * ffn_hidden, bias=False)
        self.down = nn.Linear(ffn_hidden, d_model, bias=False)

    def forward(self, x):
        g, u = self.gate_up(x).split(self.F, dim=-1)
        return self.down(F.silu(g) * u)


class Block(nn.Module):
    def __init__(self, d_model, n_head, n_kv_head, ffn_hidden, seq_len, eps):
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps)
        self.attn = Attention(d_model, n_head, n_kv_head, seq_len)
        self.norm2 = RMSNorm(d_model, eps)
        self.mlp = MLP(d_model, ffn_hidden)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class Llama(nn.Module):
    def __init__(self, n_layer, d_model, n_head, n_kv_head, ffn_hidden, vocab, seq_len, tied,
                 rope_theta=10000.0, eps=1e-5):
        super().__init__()
        self.wte = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, n_kv_head, ffn_hidden, seq_len, eps)
                                    for _ in range(n_layer))
        self.norm = RMSNorm(d_model, eps)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        if tied:
            self.wte.weight = self.lm_head.weight
        D = d_model // n_head
        inv = 1.0 / (rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
        ang = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight",
                                                                      "down.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.cos[:T], self.sin[:T])
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
