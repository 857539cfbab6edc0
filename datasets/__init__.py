"""Data pipeline: annotations -> frame sampling -> decoding -> views -> normalisation.

The Dataset classes (datasets.kvq_datasets, which registers them in kvq.core.registry.DATASETS) import
torch; they are imported on first use of a name below, so that the light modules
(datasets.annotations, datasets.converters, ...) and the CLIs that only need those stay fast.
DATASETS imports datasets.kvq_datasets on its first lookup.
"""
from __future__ import annotations

from typing import Any

__all__ = ["KSVQEDataset", "SimpleVQADataset", "build_dataset", "collate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from datasets import kvq_datasets

        return getattr(kvq_datasets, name)
    raise AttributeError(f"module 'datasets' has no attribute '{name}'")
