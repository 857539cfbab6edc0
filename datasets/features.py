"""Cached SlowFast features (written by SlowFast_features.py).

Layout (as the reference): `<root>/<video_name>/feature_<i>_{slow,fast}_feature.npy`, shapes
(1,2048,1,1,1) and (1,256,1,1,1), i = 0..n-1 (n >= 8).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from kvq.core.errors import UserError
from kvq.core.io import atomic_open

FEATURE_DIMS = {"Slow": 2048, "Fast": 256, "SlowFast": 2304}
PATHWAY_DIMS = {"slow": 2048, "fast": 256}
PATHWAYS = {"Slow": ("slow",), "Fast": ("fast",), "SlowFast": ("slow", "fast")}  # files joined per feature_type


class MissingFeatureError(UserError, FileNotFoundError):
    """A cached SlowFast feature file that the dataset needs does not exist."""


def feature_path(root: str | Path, video_name: str, index: int, pathway: str) -> Path:
    """Path of clip `index`'s feature file; pathway is 'slow' or 'fast'."""
    return Path(root) / video_name / f"feature_{index}_{pathway}_feature.npy"


def clip_feature_paths(root: str | Path, video_name: str, feature_type: str = "SlowFast",
                       num_clips: int = 8) -> list[Path]:
    """The files `load_clip_features` reads for one video, clip by clip."""
    return [feature_path(root, video_name, i, p) for i in range(num_clips) for p in PATHWAYS[feature_type]]


def write_random_features(root: str | Path, names: Sequence[str], rng: np.random.Generator,
                          clips: int = 8) -> None:
    """Random feature files in the layout above for `names` (tests, benchmarks, demos of the data
    path without a SlowFast run); files that exist are kept."""
    for name in names:
        for k in range(clips):
            for pathway, dim in PATHWAY_DIMS.items():
                path = feature_path(root, name, k, pathway)
                if not path.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_open(path, "wb") as f:
                        np.save(f, rng.random((1, dim, 1, 1, 1), dtype=np.float32))


def _load(path: Path, dim: int) -> np.ndarray:
    """One feature file -> float [dim]; a missing, unreadable or wrong-sized file names itself."""
    if not path.is_file():
        raise MissingFeatureError(
            f"SlowFast feature file '{path}' does not exist; run SlowFast_features.py for this video "
            "(README: Train on KVQ) or check data_prefix_3D")
    try:
        values = np.load(path).reshape(-1)
    except (ValueError, OSError, EOFError) as e:
        raise MissingFeatureError(f"SlowFast feature file '{path}' cannot be read ({e}); delete it and run "
                                  "SlowFast_features.py again") from e
    if values.size != dim:
        raise MissingFeatureError(f"SlowFast feature file '{path}' holds {values.size} values, expected {dim} "
                                  "(shape (1, dim, 1, 1, 1)); delete it and run SlowFast_features.py again")
    return values


def load_clip_features(root: str | Path, video_name: str, feature_type: str = "SlowFast",
                       num_clips: int = 8) -> torch.Tensor:
    """Features of the first `num_clips` clips: float [num_clips, 2048 | 256 | 2304]."""
    if feature_type not in FEATURE_DIMS:
        raise ValueError(f"feature_type must be one of {', '.join(FEATURE_DIMS)}, got {feature_type!r}")
    rows = []
    for i in range(num_clips):
        rows.append(np.concatenate([_load(feature_path(root, video_name, i, p), PATHWAY_DIMS[p])
                                    for p in PATHWAYS[feature_type]]))
    return torch.from_numpy(np.stack(rows).astype(np.float32))
