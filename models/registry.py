"""The model registries: backbones (`model.args.<key>` of a config) and heads.

Each registry imports the modules that register into it on its first lookup, so importing one
backbone module (models.slowfast for SlowFast_features.py) does not import the others."""
from __future__ import annotations

from kvq.core.registry import Registry

BACKBONES = Registry("backbone", modules=("models.ksvqe", "models.simplevqa", "models.swin3d_backbone"))
HEADS = Registry("head", modules=("models.heads",))

__all__ = ["BACKBONES", "HEADS"]
