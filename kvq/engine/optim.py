"""AdamW with backbone/other and decay/no-decay parameter groups, and its learning-rate schedule:
linear warm-up, then cosine decay to 0, stepped per iteration."""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import torch
from torch import nn

log = logging.getLogger(__name__)


def param_groups(model: nn.Module, lr: float, backbone_lr_mult: float, wd: float,
                 wd_norm_bias: bool = False) -> list[dict[str, Any]]:
    """Trainable parameters split by (inside a module named *backbone*) x (decayed or not).

    Biases and 1-d norm weights are not decayed unless `wd_norm_bias`."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_backbone = any("backbone" in part for part in name.split(".")[:-1])
        decay = wd_norm_bias or p.ndim > 1
        groups.setdefault((in_backbone, decay), []).append(p)
    out = []
    for (in_backbone, decay), params in sorted(groups.items()):
        out.append({"params": params, "lr": lr * (backbone_lr_mult if in_backbone else 1.0),
                    "weight_decay": wd if decay else 0.0,
                    "name": f"{'backbone' if in_backbone else 'other'}{'' if decay else '_no_decay'}"})
    for g in out:
        log.info("param group %s: %d tensors, %d values, lr %.3g, wd %.3g", g["name"], len(g["params"]),
                 sum(p.numel() for p in g["params"]), g["lr"], g["weight_decay"])
    return out


def build_optimizer(model: nn.Module, opt: Mapping[str, Any]) -> torch.optim.AdamW:
    groups = param_groups(model, opt["lr"], opt["backbone_lr_mult"], opt["wd"], opt["wd_norm_bias"])
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=opt["lr"])


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
    """Per-iteration `warmup_cosine` schedule of `optimizer` (epochs given as fractions allowed)."""
    warmup = int(warmup_epochs * iters_per_epoch)
    total = int(total_epochs * iters_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
