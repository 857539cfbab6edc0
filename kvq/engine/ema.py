"""Exponential moving average of a model's parameters AND buffers."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """ema = decay * ema + (1 - decay) * model for every floating-point parameter and buffer;
    integer buffers (counters, indices) are copied. `module` stays in eval mode.

    Parameters frozen when the EMA is made (requires_grad False: the CLIP and CONTRIQUE towers,
    frozen stages, `freeze_backbone`) never change, so their EMA is themselves: `module` shares
    those tensors with the model (no second copy in memory) and `state_dict` leaves them out
    (the training state holds them once, under the model). One fused (`torch._foreach_lerp_`)
    update covers the other parameters and the floating-point buffers."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
        self.module = copy.deepcopy(model, memo=dict(frozen)).eval()
        self.shared = {name for name, p in self.module.named_parameters() if id(p) in frozen}
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema, new = [], []
        for target, value in zip(self.module.parameters(), model.parameters()):
            if target is not value:
                ema.append(target)
                new.append(value.detach())
        for target, value in zip(self.module.buffers(), model.buffers()):
            if target.is_floating_point():
                ema.append(target)
                new.append(value.to(target.dtype))
            else:
                target.copy_(value)
        if ema:
            torch._foreach_lerp_(ema, new, 1.0 - self.decay)

    def state_dict(self) -> dict:
        """The EMA's state without the parameters it shares with the model."""
        return {k: v for k, v in self.module.state_dict().items() if k not in self.shared}

    def load_state_dict(self, state: dict) -> None:
        """A `state_dict` of this class (without the parameters shared with the model)."""
        unexpected = sorted(set(state) & self.shared)  # would overwrite the model's own parameters
        result = self.module.load_state_dict({k: v for k, v in state.items() if k not in self.shared}, strict=False)
        missing = sorted(set(result.missing_keys) - self.shared)
        unexpected += sorted(result.unexpected_keys)
        if missing or unexpected:
            raise RuntimeError(f"EMA state does not fit the model: missing {missing}, unexpected {unexpected}")
