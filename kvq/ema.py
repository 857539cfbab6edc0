"""Exponential moving average of a model's parameters AND buffers."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """ema = decay * ema + (1 - decay) * model for every floating-point parameter and buffer;
    integer buffers (counters, indices) are copied. `module` stays in eval mode."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        own = self.module.state_dict()
        for key, value in model.state_dict().items():
            target = own[key]
            if target.is_floating_point():
                target.lerp_(value.to(target.dtype), 1.0 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
