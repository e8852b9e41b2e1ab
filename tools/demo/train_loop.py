#!/usr/bin/python3
"""The demo Flamingo's training loop (tools/demo/train_flamingo.py, dense_vision.py): AdamW,
linear warmup over 5% of the steps then cosine decay to 0, gradients clipped at norm 1."""

import math
import time

import torch

def lr_at(step, steps, lr):
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def optimizer(params, lr, scaled=(), scale=1.0):
    """AdamW; `scaled` params (a subset of params) learn at lr * scale."""
    groups = []
    for ps, f in (([p for p in params if all(p is not q for q in scaled)], 1.0), (scaled, scale)):
        groups += [{"params": [p for p in ps if p.dim() >= 2], "weight_decay": 0.01, "f": f},
                   {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0, "f": f}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.98))


def run_stage(name, params, steps, lr, make_batch, loss_fn, log_every, scaled=(), scale=1.0):
    opt = optimizer(params, lr, scaled, scale)
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr) * g["f"]
        loss = loss_fn(*make_batch(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            el = time.time() - t0
            print(f"{name} step {step + 1}/{steps} loss {float(loss):.4f} "
                  f"({el:.0f}s, {el / (step + 1):.2f} s/step)", flush=True)
    return time.time() - t0
