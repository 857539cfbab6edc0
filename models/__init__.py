"""Quality models. The backbone modules (models.ksvqe, models.simplevqa, models.swin3d_backbone)
register their classes in `models.registry.BACKBONES`, which imports them on its first lookup: this
package imports none of them, so that models.slowfast alone (SlowFast_features.py) does not import
torchvision."""
from __future__ import annotations

from typing import Any, Mapping

from kvq.core.config import source_of
from models.network import VQANetwork


def create_model(cfg: Mapping[str, Any]) -> VQANetwork:
    """The network described by a validated config's `model` section."""
    return VQANetwork(cfg["model"]["args"], source_of(cfg))


__all__ = ["VQANetwork", "create_model"]
