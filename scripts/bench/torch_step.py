#!/usr/bin/python3
"""torch_step.py: PyTorch training-step throughput on the CPU for the GPT of
tests/reference/torch_gpt.py (the same model nupipe trains), float32: forward, backward, global
gradient-norm clipping and an AdamW step per iteration, timed after a warm-up.

    /usr/bin/python3 scripts/bench/torch_step.py --n-layer 2 --seq 256 --batch 4 --threads 2

Prints the per-step times and, last, `torch_tokens_per_s X` (batch*seq / median step time) and
`torch_step_ms X` for scripts/bench/cpu_step.sh.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))

import torch  # noqa: E402

from torch_gpt import GPT, GPTConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4, help="sequences per step")
    ap.add_argument("--untied", action="store_true", help="separate LM head (default: tied to wte)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0, help="global-norm clip (0: off)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1 or args.batch < 1:
        ap.error("--steps, --threads and --batch must be positive")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = GPTConfig(n_layer=args.n_layer, d_model=args.d_model, n_head=args.n_head,
                    vocab_size=args.vocab, seq_len=args.seq, tie_embeddings=not args.untied)
    model = GPT(cfg).init_weights(0.02)
    # Weight decay on the matrices, not on biases or LayerNorm gains (the usual GPT-2 split;
    # which tensors decay does not change the step's cost).
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    n_params = sum(p.numel() for p in model.parameters())
    tokens_per_step = args.batch * args.seq
    print(f"torch_step: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{n_params / 1e6:.2f}M params, n_layer={cfg.n_layer} d_model={cfg.d_model} "
          f"n_head={cfg.n_head} vocab={cfg.vocab_size} seq={cfg.seq_len} batch={args.batch} "
          f"tied={int(cfg.tie_embeddings)}", flush=True)

    g = torch.Generator().manual_seed(args.seed)
    times = []
    for step in range(args.warmup + args.steps):
        data = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=g)
        tokens, targets = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        dt = time.perf_counter() - t0
        timed = step >= args.warmup
        if timed:
            times.append(dt)
        print(f"step {step}{'' if timed else ' (warm-up)'}: loss {loss.item():.4f} "
              f"{dt * 1e3:.1f} ms {tokens_per_step / dt:.1f} tokens/s", flush=True)

    median = statistics.median(times)
    print(f"torch_step_ms {median * 1e3:.1f}")
    print(f"torch_tokens_per_s {tokens_per_step / median:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
