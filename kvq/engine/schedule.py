"""Learning-rate schedule: linear warm-up, then cosine decay to 0, stepped per iteration."""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, warmup_iters: int, total_iters: int) -> float:
    """LR factor of iteration `step` (0-based): (step+1)/warmup during warm-up, then
    0.5·(1+cos(π·progress)) over the remaining iterations. Unlike the reference, the first step
    does not use LR 0, the cosine spans (total - warmup) iterations, and warmup 0 works."""
    if step < warmup_iters:
        return (step + 1) / warmup_iters
    span = max(total_iters - warmup_iters, 1)
    progress = min((step - warmup_iters) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_epochs: float, total_epochs: float,
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(warmup_epochs * iters_per_epoch)
    total = int(total_epochs * iters_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
