"""SlowFast features of video files scored by path (test.py --videos, `Scorer`): which network
makes them, where they are cached, and the data spec that reads them."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from datasets.annotations import VideoRecord
from datasets.kvq_datasets import SimpleVQADataset
from datasets.registry import DATASETS
from kvq.features.slowfast import build_extractor, extract_features, feature_name, is_complete

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlowFastOptions:
    """Which SlowFast R50 makes SimpleVQA's features for videos scored by path, and where they
    are cached. pretrained: Kinetics-400 weights (`weights`: a .pyth path, else searched as
    SlowFast_features.py does); otherwise the random network of `seed`, the one
    `SlowFast_features.py --no_pretrained --seed S` uses (the demo's). cache_dir: default
    `$KVQ_CACHE_DIR` (else ~/.cache/kvq) / slowfast_features / k400 | random_seed<S>."""

    pretrained: bool = True
    weights: Optional[str] = None
    seed: int = 0
    cache_dir: Optional[str | Path] = None
    batch_clips: int = 2
    num_workers: int = 0

    def folder(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        base = Path(os.environ.get("KVQ_CACHE_DIR", Path.home() / ".cache" / "kvq"))
        return base / "slowfast_features" / ("k400" if self.pretrained else f"random_seed{self.seed}")


def needs_slowfast_features(spec: Mapping[str, Any]) -> bool:
    """True when the data spec's dataset reads cached SlowFast features (SimpleVQA, unless its
    data_prefix_3D is null: a backbone with motion_channels 0, e.g. the demo's)."""
    return (issubclass(DATASETS.get(spec["type"]), SimpleVQADataset) and "simpleVQA" in spec["args"]["sample_types"]
            and bool(spec["args"].get("data_prefix_3D")))


def features_for_files(records: Sequence[VideoRecord], spec: Mapping[str, Any], options: SlowFastOptions,
                       device: torch.device, progress: bool = True
                       ) -> tuple[list[VideoRecord], dict[str, Any], list[tuple[str, str]]]:
    """Extract (or reuse) SlowFast features of files scored by path, for a SimpleVQA spec.

    Returns (the records that have features, each keyed by `feature_name(path)`; the spec
    reading them from the cache folder; (video, error) for videos that could not be decoded).
    Specs that need no features come back unchanged."""
    if not needs_slowfast_features(spec):
        return list(records), dict(spec), []
    folder = options.folder()
    keyed = [replace(r, feature_name=feature_name(r.path)) for r in records]
    todo = [(r.feature_name, r.path) for r in keyed if not is_complete(folder, r.feature_name, r.path)]
    failed: dict[str, str] = {}
    if todo:
        log.info("SlowFast features of %d videos -> %s", len(todo), folder)
        model = build_extractor(options.pretrained, options.weights, options.seed)
        failed = extract_features(todo, folder, model, device, batch_clips=options.batch_clips,
                                  num_workers=options.num_workers, progress=progress)
    kept = [r for r in keyed if r.feature_name not in failed]
    errors = [(r.video_name, f"SlowFast features: {failed[r.feature_name]}") for r in keyed if r.feature_name in failed]
    return kept, {**spec, "args": {**spec["args"], "data_prefix_3D": str(folder)}}, errors
