"""Quality models. Importing this package registers every backbone (see `kvq.registry.BACKBONES`)."""
from __future__ import annotations

from typing import Any, Mapping

from models import ksvqe, simplevqa, swin3d  # noqa: F401  (register the backbones)
from models.network import VQANetwork


def create_model(cfg: Mapping[str, Any]) -> VQANetwork:
    """The network described by a validated config's `model` section."""
    return VQANetwork(cfg["model"]["args"], getattr(cfg, "source", "<config>"))


__all__ = ["VQANetwork", "create_model"]
