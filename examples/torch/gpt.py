"""A small GPT-style model in plain PyTorch, for trying memory on a GPU you do not have.

    cumemtrace run --torch --sim-gpu RTX4090 -- python examples/torch/gpt.py --layers 12 --width 768

No downloads: the tokens are random. Training (AdamW, optional bf16 autocast and activation
checkpointing) or inference with a KV cache. At the end, and at an out-of-memory error, it prints
PyTorch's own accounting as one machine-readable line: `TORCH_MEMORY {json}`.
"""
import argparse
import contextlib
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def attend(self, x, cache=None):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in (q, k, v))
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        if cache is None:
            mask = torch.ones(t, t, device=x.device, dtype=torch.bool).tril()
            att = att.masked_fill(~mask, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))

    def forward(self, x, cache=None):
        x = x + self.attend(x, cache)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, width, layers, heads, seq):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(seq, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx, checkpointing=False, caches=None, start=0):
        t = idx.size(1)
        x = self.tok(idx) + self.pos(torch.arange(start, start + t, device=idx.device))
        for i, block in enumerate(self.blocks):
            if checkpointing and self.training:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, None if caches is None else caches[i])
        return self.head(self.ln(x))


def accounting(event, model, **extra):
    s = torch.cuda.memory_stats()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    line = {"event": event, "params": sum(p.numel() for p in model.parameters()),
            "param_tensors": len(list(model.parameters())), "param_bytes": params,
            "allocated_bytes": s.get("allocated_bytes.all.current", 0),
            "allocated_peak_bytes": s.get("allocated_bytes.all.peak", 0),
            "reserved_bytes": s.get("reserved_bytes.all.current", 0),
            "reserved_peak_bytes": s.get("reserved_bytes.all.peak", 0),
            "num_ooms": s.get("num_ooms", 0), "num_alloc_retries": s.get("num_alloc_retries", 0)}
    line.update(extra)
    print("TORCH_MEMORY " + json.dumps(line, sort_keys=True), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    ap.add_argument("--inference", action="store_true", help="generate with a KV cache instead of training")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--nvtx", action="store_true",
                    help="mark the phases with NVTX ranges (step > forward, backward, optimizer), which "
                         "`cumemtrace run` records")
    ap.add_argument("--record-history", action="store_true",
                    help="PyTorch's own allocator history recording on (the baseline `run --torch` is measured against)")
    args = ap.parse_args()
    if args.width % args.heads:
        ap.error("--width must be a multiple of --heads")

    if args.record_history:
        torch.cuda.memory._record_memory_history(max_entries=100000)
    torch.manual_seed(0)
    step_s = []
    model = GPT(args.vocab, args.width, args.layers, args.heads, args.seq + args.new_tokens).cuda()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    try:
        if args.inference:
            model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                idx = torch.randint(args.vocab, (args.batch, args.seq), device="cuda")
                caches = [dict() for _ in model.blocks]
                logits = model(idx, caches=caches)
                for i in range(args.new_tokens):
                    nxt = logits[:, -1:].argmax(-1)
                    logits = model(nxt, caches=caches, start=args.seq + i)
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
            phase = torch.cuda.nvtx.range if args.nvtx else (lambda name: contextlib.nullcontext())
            for _ in range(args.steps):
                t0 = time.perf_counter()
                with phase("step"):
                    idx = torch.randint(args.vocab, (args.batch, args.seq + 1), device="cuda")
                    with phase("forward"), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                        logits = model(idx[:, :-1], checkpointing=args.checkpointing)
                        loss = F.cross_entropy(logits.float().view(-1, args.vocab), idx[:, 1:].reshape(-1))
                    with phase("backward"):
                        loss.backward()
                    with phase("optimizer"):
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    torch.cuda.synchronize()
                step_s.append(round(time.perf_counter() - t0, 6))
        torch.cuda.synchronize()
    except torch.OutOfMemoryError as e:
        accounting("oom", model, message=str(e).splitlines()[0])
        return 1
    accounting("end", model, step_s=step_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
