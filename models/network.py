"""`VQANetwork`: the reference `VQA_Network` wrapper (`<key>_backbone` + `<key>_head`).

The attribute names make the state-dict keys identical to the reference checkpoints:
`KSVQE_backbone.*`, `KSVQE_head.*`, `simpleVQA_backbone.*`, `swin_tiny_grpb_head.*` ...
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping

import torch
from torch import nn

from kvq.core.config import constructor_args
from models.registry import BACKBONES, HEADS

log = logging.getLogger(__name__)


def checked_args(cls: type, args: Mapping[str, Any], path: str, source: str = "<config>") -> dict[str, Any]:
    """`args` checked against the constructor of `cls` (`kvq.core.config.constructor_args`; a validated
    config was checked at load already), warnings logged."""
    warnings: list[str] = []
    out = constructor_args(cls, args or {}, path, source, warnings)
    for w in warnings:
        log.warning("%s", w)
    return out


def backbone_kwargs(key: str, args: Mapping[str, Any], source: str = "<config>") -> dict[str, Any]:
    """`model.args.<key>.backbone` checked against the backbone's constructor."""
    return checked_args(BACKBONES.get(key), args, f"model.args.{key}.backbone", source)


def pretrained_weights(model_args: Mapping[str, Mapping[str, Any]], source: str = "<config>"
                       ) -> list[tuple[str, Any]]:
    """(weight record, path given in the config or None) of every pretrained file that building
    this `model.args` loads: each backbone's `weight_args` when its `pretrained` is on (or its
    `pretrained_files(kwargs)`)."""
    out = []
    for key, hypers in model_args.items():
        cls = BACKBONES.get(key)
        kwargs = backbone_kwargs(key, hypers.get("backbone") or {}, source)
        if hasattr(cls, "pretrained_files"):  # the records depend on the arguments (simpleVQA)
            out += cls.pretrained_files(kwargs)
        elif kwargs.get("pretrained", inspect.signature(cls.__init__).parameters["pretrained"].default):
            out += [(record, kwargs.get(arg)) for record, arg in getattr(cls, "weight_args", {}).items()]
    return out


class VQANetwork(nn.Module):
    """One backbone + head per key of `model.args`; scores of all keys are summed.

    forward(batch) -> {"score": [B, 1], "distortion_tokens": [B, T/2, 49, 128] (KSVQE only, the
    input of its contrastive loss: `kvq.engine.losses.contrastive_loss`)}.
    """

    def __init__(self, model_args: Mapping[str, Mapping[str, Any]], source: str = "<config>") -> None:
        super().__init__()
        self.key_names: list[str] = []
        for key, hypers in model_args.items():
            backbone_cls = BACKBONES.get(key)
            backbone = backbone_cls(**backbone_kwargs(key, hypers.get("backbone") or {}, source))
            head_cls = HEADS.get(backbone_cls.head_type)
            given = checked_args(head_cls, hypers.get("head") or {}, f"model.args.{key}.head", source)
            derived = backbone.head_defaults.get("in_channels")  # the backbone's own (may depend on its args)
            if "in_channels" in given and derived is not None and given["in_channels"] != derived:
                raise ValueError(f"{source}: model.args.{key}.head.in_channels is {given['in_channels']}, but the "
                                 f"backbone gives {derived} channels: leave in_channels out (it is derived)")
            head_args = {**backbone.head_defaults, **given}
            setattr(self, f"{key}_backbone", backbone)
            setattr(self, f"{key}_head", head_cls(**head_args))
            self.key_names.append(key)

    def backbone(self, key: str) -> nn.Module:
        return getattr(self, f"{key}_backbone")

    @property
    def has_unused_parameters(self) -> bool:
        """Whether a training step leaves some trainable parameters without a gradient (DDP must
        then look for them): a backbone says so by `has_unused_parameters` (default False)."""
        return any(getattr(self.backbone(key), "has_unused_parameters", False) for key in self.key_names)

    def heads(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The summed score [B, 1] of the heads on their backbones' features {key: features}."""
        score = None
        for key in self.key_names:
            s = getattr(self, f"{key}_head")(feats[key])
            score = s if score is None else score + s
        return score

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        feats: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        for key in self.key_names:
            feats[key] = self.backbone(key)(batch)
            if isinstance(feats[key], tuple):
                feats[key], out["distortion_tokens"] = feats[key]
        out["score"] = self.heads(feats)
        return out
