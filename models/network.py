"""`VQANetwork`: the reference `VQA_Network` wrapper (`<key>_backbone` + `<key>_head`).

The attribute names make the state-dict keys identical to the reference checkpoints:
`KSVQE_backbone.*`, `KSVQE_head.*`, `simpleVQA_backbone.*`, `swin_tiny_grpb_head.*` ...
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch
from torch import nn

from kvq.registry import BACKBONES
from models.heads import HEADS


class VQANetwork(nn.Module):
    """One backbone + head per key of `model.args`; scores of all keys are summed.

    forward(batch) -> {"score": [B, 1], "contrastive_loss": scalar tensor (KSVQE only)}.
    """

    def __init__(self, model_args: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__()
        self.key_names: list[str] = []
        for key, hypers in model_args.items():
            backbone_cls = BACKBONES.get(key)
            backbone = backbone_cls(**dict(hypers.get("backbone") or {}))
            head_cls = HEADS[backbone_cls.head_type]
            head_args = {**backbone_cls.head_defaults, **dict(hypers.get("head") or {})}
            setattr(self, f"{key}_backbone", backbone)
            setattr(self, f"{key}_head", head_cls(**head_args))
            self.key_names.append(key)

    def backbone(self, key: str) -> nn.Module:
        return getattr(self, f"{key}_backbone")

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        score = None
        out: dict[str, torch.Tensor] = {}
        for key in self.key_names:
            feats = self.backbone(key)(batch)
            if isinstance(feats, tuple):
                feats, out["contrastive_loss"] = feats
            s = getattr(self, f"{key}_head")(feats)
            score = s if score is None else score + s
        out["score"] = score
        return out


def backbone_arg_names(key: str) -> list[str]:
    """Constructor keyword names of backbone `key` (for config validation)."""
    sig = inspect.signature(BACKBONES.get(key).__init__)
    return [n for n, p in sig.parameters.items() if n != "self" and p.kind is p.KEYWORD_ONLY or
            (n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD)]
