#!/usr/bin/python3
"""torch_step.py: PyTorch training-step throughput for a nanoGPT-style GPT-2 (the model nupipe
trains) or, with --family llama, a Llama-style decoder (torch_step_llama.py), on the CPU (scripts/bench/cpu_step.sh) or a GPU (scripts/gpu/bench.sh, --device cuda
--compile 1): forward, backward, global gradient-norm clipping and an AdamW step per iteration,
timed after a warm-up, in fp32 or in bf16 autocast with fp32 master weights.

    /usr/bin/python3 scripts/bench/torch_step.py --n-layer 2 --seq 256 --batch 4 --threads 2
    /usr/bin/python3 scripts/bench/torch_step.py --precision bf16 --adamw foreach

The model is nanoGPT's: nn.Embedding for tokens and positions, pre-LayerNorm blocks with one qkv
nn.Linear, causal attention (F.scaled_dot_product_attention where this torch has it, else the
masked softmax), a tanh-GELU MLP, final LayerNorm and an LM head tied to the token embedding
unless --untied. Denormals are flushed to zero unless --flush-denormal 0. `--adamw auto` times
each AdamW implementation this torch accepts (for-loop, foreach, fused) on a copy of the
parameters and trains with the fastest. Training tokens are uniform over ids [0, --alphabet).

Prints the settings used, per-step lines and, last, `torch_step_ms X` (median step time),
`torch_tokens_per_s X` (batch*seq / median step time) and `torch_loss X` (the loss of the last
step) for scripts/bench/cpu_step.sh.
"""

import argparse
import contextlib
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_step_llama  # noqa: E402

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, n_head, seq_len):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        if not HAS_SDPA:
            mask = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
            self.register_buffer("bias", mask.view(1, 1, seq_len, seq_len), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if HAS_SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(~self.bias[:, :, :T, :T], float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.c_proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d_model, n_head, seq_len):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, seq_len)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, n_layer, d_model, n_head, vocab, seq_len, tied):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d_model),
            wpe=nn.Embedding(seq_len, d_model),
            h=nn.ModuleList(Block(d_model, n_head, seq_len) for _ in range(n_layer)),
            ln_f=nn.LayerNorm(d_model),
        ))
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        if tied:
            self.transformer.wte.weight = self.lm_head.weight
        # GPT-2 init: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer)), zero biases.
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


ADAMW_KWARGS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True},
                "fused": {"fused": True}}


def make_adamw(params, variant, lr, weight_decay):
    """AdamW over params with the GPT-2 decay split (matrices decay; biases and gains do not)."""
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, **ADAMW_KWARGS[variant])


def fastest_adamw(params, lr, weight_decay, reps=3):
    """Times steps of each AdamW variant this torch accepts, interleaved, on a copy of params
    with random gradients; returns the fastest variant and {variant: best ms}."""
    copies = [p.detach().clone().requires_grad_() for p in params]
    for c in copies:
        c.grad = torch.randn_like(c) * 1e-3
    opts = {}
    for variant in ADAMW_KWARGS:
        try:
            opts[variant] = make_adamw(copies, variant, lr, weight_decay)
            opts[variant].step()  # allocates the moments
        except (TypeError, RuntimeError, ValueError):
            opts.pop(variant, None)
    timings = {variant: math.inf for variant in opts}
    for _ in range(reps):
        for variant, opt in opts.items():
            t0 = time.perf_counter()
            opt.step()
            timings[variant] = min(timings[variant], (time.perf_counter() - t0) * 1e3)
    return min(timings, key=timings.get), timings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4, help="sequences per step")
    ap.add_argument("--untied", action="store_true", help="separate LM head (default: tied to wte)")
    ap.add_argument("--family", choices=("gpt2", "llama"), default="gpt2")
    ap.add_argument("--n-kv-head", type=int, default=0, help="llama: key/value heads (0: n-head)")
    ap.add_argument("--ffn-hidden", type=int, default=0, help="llama: SwiGLU width (required)")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--norm-eps", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: autocast to bfloat16 with fp32 master weights")
    ap.add_argument("--flush-denormal", type=int, choices=(0, 1), default=1)
    ap.add_argument("--adamw", choices=("auto",) + tuple(ADAMW_KWARGS), default="auto",
                    help="AdamW implementation (auto: the fastest, timed at start-up)")
    ap.add_argument("--alphabet", type=int, default=0, help="token ids in [0, alphabet) (0: vocab)")
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0, help="global-norm clip (0: off)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda")
    ap.add_argument("--compile", type=int, choices=(0, 1), default=0, help="torch.compile the model")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1 or args.batch < 1:
        ap.error("--steps, --threads and --batch must be positive")
    if args.d_model % args.n_head:
        ap.error("--d-model must be a multiple of --n-head")
    kv = args.n_kv_head or args.n_head
    if args.family == "llama" and (args.ffn_hidden <= 0 or args.n_head % kv
                                   or (args.d_model // args.n_head) % 2):
        ap.error("--family llama needs --ffn-hidden > 0, --n-kv-head dividing --n-head and an "
                 "even head size")
    alphabet = args.alphabet or args.vocab
    if not 0 < alphabet <= args.vocab:
        ap.error("--alphabet must be in [1, --vocab]")

    torch.set_num_threads(args.threads)
    flushed = torch.set_flush_denormal(bool(args.flush_denormal))
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.family == "llama":
        model = torch_step_llama.Llama(args.n_layer, args.d_model, args.n_head, kv,
                                       args.ffn_hidden, args.vocab, args.seq, not args.untied,
                                       args.rope_theta, args.norm_eps).to(device)
        attention = torch_step_llama.attention_kind()
    else:
        model = GPT(args.n_layer, args.d_model, args.n_head, args.vocab, args.seq,
                    not args.untied).to(device)
        attention = "sdpa" if HAS_SDPA else "masked-softmax"
    params = list(model.parameters())
    step_model = torch.compile(model) if args.compile else model
    adamw, timings = args.adamw, {}
    if adamw == "auto":
        adamw, timings = fastest_adamw(params, args.lr, args.weight_decay)
    try:
        opt = make_adamw(params, adamw, args.lr, args.weight_decay)
    except (TypeError, RuntimeError, ValueError) as e:
        ap.error(f"--adamw {adamw}: not available in torch {torch.__version__} here ({e})")

    def autocast():
        if args.precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    tokens_per_step = args.batch * args.seq
    print(f"torch_step: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{sum(p.numel() for p in params) / 1e6:.2f}M params, {args.family} n_layer={args.n_layer} "
          f"d_model={args.d_model} n_head={args.n_head} vocab={args.vocab} seq={args.seq} "
          f"batch={args.batch} tied={int(not args.untied)} alphabet={alphabet}"
          + (f" n_kv_head={kv} ffn_hidden={args.ffn_hidden}" if args.family == "llama" else ""))
    flush = "on" if flushed else "off (not supported here)"
    timed_adamw = ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items())
    print(f"torch_step: precision={args.precision} "
          f"flush_denormal={flush if args.flush_denormal else 'off'} "
          f"attention={attention} adamw={adamw} "
          f"device={device} compile={args.compile}"
          + (f" (step: {timed_adamw})" if timings else ""), flush=True)

    g = torch.Generator().manual_seed(args.seed)
    times = []
    for step in range(args.warmup + args.steps):
        data = torch.randint(0, alphabet, (args.batch, args.seq + 1), generator=g).to(device)
        tokens, targets = data[:, :-1], data[:, 1:]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = step_model(tokens, targets)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        timed = step >= args.warmup
        if timed:
            times.append(dt)
        print(f"step {step + 1}{'' if timed else ' (warm-up)'}: loss {loss.item():.4f} "
              f"{dt * 1e3:.1f} ms {tokens_per_step / dt:.1f} tokens/s", flush=True)

    median = statistics.median(times)
    print(f"torch_step_ms {median * 1e3:.1f}")
    print(f"torch_tokens_per_s {tokens_per_step / median:.1f}")
    print(f"torch_loss {loss.item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
