"""Frozen backbones' features computed once per video, for training the heads alone
(config `cache_features`, with `freeze_backbone`).

The trainer runs every backbone once over the train split, as test.py scores it (its
deterministic test-phase view: no random crops or frame offsets, so no train-time augmentation),
and over the val split; it keeps the outputs in memory and trains the heads on them, so an epoch
costs the heads only. The checkpoints stay full models (backbones + heads) that score raw videos.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from tqdm import tqdm

from kvq.core.device import autocast
from kvq.eval.predict import Predictions, clip_inputs, video_scores

log = logging.getLogger(__name__)


@dataclass
class FeatureCache:
    """One split's backbone outputs: features {key: [N, n, ...]} (N videos, n clips each, the
    backbone's output per clip, e.g. [T, C] for simpleVQA), labels [N], video names."""

    features: dict[str, torch.Tensor]
    labels: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
        """Features of the videos `index` [B] as the heads take them ({key: [B*n, ...]} on
        `device`) and n, the clips per video (`kvq.eval.predict.video_scores` averages them)."""
        out = {key: f[index].flatten(0, 1).to(device) for key, f in self.features.items()}
        return out, next(iter(self.features.values())).shape[1]

    def subset(self, index: list[int]) -> "FeatureCache":
        """The videos `index` of this cache, in that order."""
        i = torch.as_tensor(index, dtype=torch.long)
        return FeatureCache({k: f[i] for k, f in self.features.items()}, self.labels[i], [self.names[j] for j in index])

    def predict(self, model: Any, device: torch.device) -> Predictions:
        """The heads of `model` (a `VQANetwork`, eval mode) on every cached video, in order."""
        model.eval()
        with torch.no_grad():
            feats, n = self.batch(torch.arange(len(self)), device)
            scores = video_scores(model.heads(feats), n).view(-1)
        return Predictions(list(self.names), scores.cpu().tolist(), self.labels.tolist())


@torch.no_grad()
def cache_features(model: Any, loader: Iterable[Mapping[str, Any]], device: torch.device, amp: str = "off",
                   desc: str = "features", progress: bool = True) -> FeatureCache:
    """Every backbone of `model` (a `VQANetwork`, put in eval mode) on each video of `loader`
    (batches of one video); videos marked unreadable (datasets.skipping.SkipUnreadable) are left out
    with a warning. A backbone whose output is not one tensor (KSVQE's distortion tokens) is refused."""
    model.eval()
    per_key: dict[str, list[torch.Tensor]] = {key: [] for key in model.key_names}
    labels: list[float] = []
    names: list[str] = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        for path, error in batch.get("bad_videos", []):
            log.warning("left out of the feature cache: %s: %s", path, error)
        if "video_name" not in batch:
            continue
        inputs, n = clip_inputs(batch, device)
        for key in model.key_names:
            with autocast(device, amp):
                out = model.backbone(key)(inputs)
            if not torch.is_tensor(out):
                raise ValueError(f"cache_features: the {key} backbone's output is not one tensor (it gives "
                                 f"{type(out).__name__}); its heads cannot be trained on cached features")
            per_key[key].append(out.float().cpu().unflatten(0, (-1, n)))  # [B, n, ...]
        labels += [float(x) for x in batch["label"]]
        names += list(batch["video_name"])
    if not names:
        raise ValueError("cache_features: no video of the split could be decoded")
    features = {key: torch.cat(parts) for key, parts in per_key.items()}
    return FeatureCache(features, torch.tensor(labels, dtype=torch.float64), names)
