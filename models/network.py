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

from kvq.config import ConfigError
from kvq.registry import BACKBONES, did_you_mean
from models.heads import HEADS

log = logging.getLogger(__name__)


def backbone_kwargs(key: str, args: Mapping[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Check `model.args.<key>.backbone` against the backbone's constructor.

    Empty values (None) take the constructor default; keys listed in the backbone's
    `legacy_args` (seed keys without effect) are dropped with a warning; any other unknown key is
    a ConfigError naming the nearest valid one.
    """
    cls = BACKBONES.get(key)
    params = [n for n, p in inspect.signature(cls.__init__).parameters.items()
              if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    legacy: Mapping[str, str] = getattr(cls, "legacy_args", {})
    out = {}
    for name, value in (args or {}).items():
        if name in legacy:
            log.warning("%s: model.args.%s.backbone.%s is ignored: %s", source, key, name, legacy[name])
        elif name not in params:
            raise ConfigError(f"{source}: unknown key 'model.args.{key}.backbone.{name}'"
                              f"{did_you_mean(name, params)}; valid: {', '.join(params)}")
        elif value is not None:
            out[name] = value
    return out


class VQANetwork(nn.Module):
    """One backbone + head per key of `model.args`; scores of all keys are summed.

    forward(batch) -> {"score": [B, 1], "distortion_tokens": [B, T/2, 49, 128] (KSVQE only, the
    input of its contrastive loss: `kvq.losses.contrastive_loss`)}.
    """

    def __init__(self, model_args: Mapping[str, Mapping[str, Any]], source: str = "<config>") -> None:
        super().__init__()
        self.key_names: list[str] = []
        for key, hypers in model_args.items():
            backbone_cls = BACKBONES.get(key)
            backbone = backbone_cls(**backbone_kwargs(key, hypers.get("backbone") or {}, source))
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
                feats, out["distortion_tokens"] = feats
            s = getattr(self, f"{key}_head")(feats)
            score = s if score is None else score + s
        out["score"] = score
        return out
