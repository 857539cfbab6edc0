"""Quality models. Importing this package registers every backbone (see `kvq.registry.BACKBONES`)."""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from models.network import VQANetwork

for _module in ("simplevqa", "swin3d", "ksvqe"):
    try:
        importlib.import_module(f"models.{_module}")
    except ModuleNotFoundError as _e:  # parts still being written
        if _e.name != f"models.{_module}":
            raise


def create_model(cfg: Mapping[str, Any]) -> VQANetwork:
    """The network described by a validated config's `model` section."""
    return VQANetwork(cfg["model"]["args"], getattr(cfg, "source", "<config>"))


__all__ = ["VQANetwork", "create_model"]
