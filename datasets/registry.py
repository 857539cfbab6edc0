"""The dataset registries: dataset classes (`data.<split>.type` of a config) and annotation
converters. Each imports the modules that register into it on its first lookup."""
from __future__ import annotations

from kvq.core.registry import Registry

DATASETS = Registry("dataset", modules=("datasets.kvq_datasets",))
CONVERTERS = Registry("annotation converter", modules=("datasets.converters",))

__all__ = ["DATASETS", "CONVERTERS"]
