"""Cached SlowFast features (written by SlowFast_features.py).

Layout (as the seed): `<root>/<video_name>/feature_<i>_{slow,fast}_feature.npy`, shapes
(1,2048,1,1,1) and (1,256,1,1,1), i = 0..n-1 (n >= 8).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

FEATURE_DIMS = {"Slow": 2048, "Fast": 256, "SlowFast": 2304}


class MissingFeatureError(FileNotFoundError):
    """A cached SlowFast feature file that the dataset needs does not exist."""


def feature_path(root: str | Path, video_name: str, index: int, pathway: str) -> Path:
    """Path of clip `index`'s feature file; pathway is 'slow' or 'fast'."""
    return Path(root) / video_name / f"feature_{index}_{pathway}_feature.npy"


def write_random_features(root: str | Path, names: Sequence[str], rng: np.random.Generator,
                          clips: int = 8) -> None:
    """Random feature files in the layout above for `names` (tests, benchmarks, demos of the data
    path without a SlowFast run); files that exist are kept."""
    for name in names:
        for k in range(clips):
            for pathway, dim in (("slow", 2048), ("fast", 256)):
                path = feature_path(root, name, k, pathway)
                if not path.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, rng.random((1, dim, 1, 1, 1), dtype=np.float32))


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise MissingFeatureError(
            f"SlowFast feature file '{path}' does not exist; run SlowFast_features.py for this video "
            "(see README) or check data_prefix_3D")
    return np.load(path).reshape(-1)


def load_clip_features(root: str | Path, video_name: str, feature_type: str = "SlowFast",
                       num_clips: int = 8) -> torch.Tensor:
    """Features of the first `num_clips` clips: float [num_clips, 2048 | 256 | 2304]."""
    rows = []
    for i in range(num_clips):
        parts = []
        if feature_type in ("Slow", "SlowFast"):
            parts.append(_load(feature_path(root, video_name, i, "slow")))
        if feature_type in ("Fast", "SlowFast"):
            parts.append(_load(feature_path(root, video_name, i, "fast")))
        rows.append(np.concatenate(parts))
    out = torch.from_numpy(np.stack(rows).astype(np.float32))
    if out.shape[1] != FEATURE_DIMS[feature_type]:
        raise ValueError(f"features of '{video_name}' under '{root}' have {out.shape[1]} values per clip, "
                         f"expected {FEATURE_DIMS[feature_type]} for feature_type {feature_type}")
    return out
