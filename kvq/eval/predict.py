"""Inference over a data loader: every video predicted once; multi-clip inputs scored per clip
and averaged (the reference fed 3 clips to KSVQE as one 96-frame sequence)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datasets import collate
from datasets.kvq_datasets import frame_size_key
from datasets.normalize import NORMALIZATIONS
from kvq.core.device import autocast
from kvq.core.distributed import DistInfo

log = logging.getLogger(__name__)

VIDEO_KEYS = ("technical", "fragment", "resize_video", "simpleVQA", "aesthetic")
PER_VIDEO_KEYS = ("dis_label", "label", *(frame_size_key(k) for k in VIDEO_KEYS))  # repeated per clip


def eval_loader(dataset: Dataset, device: torch.device, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """A loader that yields every item of `dataset` once, in order (no shuffling), collated by
    `datasets.collate` (undecodable videos listed under 'bad_videos'); pinned memory on CUDA."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers,
                      pin_memory=device.type == "cuda")


def clips_per_video(batch: Mapping[str, Any]) -> int:
    """Number of clips each video of the batch holds (all views must agree)."""
    counts = {int(v[0]) if torch.is_tensor(v) else int(v) for v in batch.get("num_clips", {}).values()}
    if len(counts) > 1:
        raise ValueError(f"views with different num_clips {sorted(counts)} cannot be evaluated together")
    return counts.pop() if counts else 1


def split_clips(batch: Mapping[str, Any], n: int) -> dict[str, Any]:
    """[B, C, n*T, H, W] video tensors -> [B*n, C, T, H, W]; per-video values repeated n times."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.ndim == 5 and any(key.startswith(k) for k in VIDEO_KEYS):
            b, c, t, h, w = value.shape
            if t % n:
                raise ValueError(f"'{key}' has {t} frames, not a multiple of num_clips {n}")
            out[key] = value.view(b, c, n, t // n, h, w).transpose(1, 2).reshape(b * n, c, t // n, h, w)
        elif torch.is_tensor(value) and value.ndim >= 1 and key in PER_VIDEO_KEYS:
            out[key] = value.repeat_interleave(n, dim=0)
        else:
            out[key] = value
    return out


def clip_inputs(batch: Mapping[str, Any], device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
    """The batch's tensors copied to `device` as they come (uint8 frames), there multi-clip videos
    split into one item per clip ([B, C, n*T, H, W] -> [B*n, C, T, H, W]) and the views named in
    batch["normalization"] ({view: [name per video]}, datasets.normalize.NORMALIZATIONS)
    normalised into float32; returns (inputs, n clips per video)."""
    n = clips_per_video(batch)
    inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
    if n > 1:
        inputs = split_clips(inputs, n)
    for key, names in batch.get("normalization", {}).items():
        inputs[key] = NORMALIZATIONS[names[0]](inputs[key])
    return inputs, n


def video_scores(score: torch.Tensor, n: int) -> torch.Tensor:
    """Per-clip scores [B*n, 1] -> per-video mean [B, 1]."""
    return score.float().view(-1, n).mean(dim=1, keepdim=True)


@dataclass
class Predictions:
    names: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)

    def extend(self, other: "Predictions") -> None:
        self.names += other.names
        self.scores += other.scores
        self.labels += other.labels

    @property
    def has_labels(self) -> bool:
        return bool(self.labels) and bool(np.all(np.isfinite(self.labels)))


def gather_predictions(preds: Predictions, info: DistInfo) -> Predictions:
    """All ranks' predictions on rank 0, in rank order (others get an empty result); a collective
    call under DDP, the predictions themselves in one process."""
    if not info.enabled:
        return preds
    parts: list[Optional[Predictions]] = [None] * info.world_size
    dist.all_gather_object(parts, preds)
    merged = Predictions()
    if info.is_main:
        for p in parts:
            merged.extend(p)
    return merged


def predict(model: nn.Module, loader: Iterable[Mapping[str, Any]], device: torch.device, amp: str = "off",
            desc: str = "predict", progress: bool = True, errors: Optional[list] = None) -> Predictions:
    """Mean score per video, in loader order. `model` is put in eval mode.

    Videos marked unreadable (datasets.skipping.SkipUnreadable) are appended to `errors` as
    (path, message); without an `errors` list they are an error."""
    return predict_each({"": model}, loader, device, amp, desc, progress, errors)[""]


@torch.no_grad()
def predict_each(models: Mapping[str, nn.Module], loader: Iterable[Mapping[str, Any]], device: torch.device,
                 amp: str = "off", desc: str = "predict", progress: bool = True,
                 errors: Optional[list] = None) -> dict[str, Predictions]:
    """`predict` of several models in one pass over `loader` (each batch decoded and copied
    once): {tag: Predictions} for `models` {tag: model}."""
    for model in models.values():
        model.eval()
    out = {tag: Predictions() for tag in models}
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        if batch.get("bad_videos"):
            if errors is None:
                raise RuntimeError(f"undecodable videos during evaluation: {batch['bad_videos']}")
            errors += batch["bad_videos"]
        if "video_name" not in batch:
            continue
        inputs, n = clip_inputs(batch, device)
        for tag, model in models.items():
            with autocast(device, amp):
                scores = video_scores(model(inputs)["score"], n).view(-1)
            out[tag].names += list(batch["video_name"])
            out[tag].scores += scores.cpu().tolist()
            out[tag].labels += [float(x) for x in batch["label"]]
    return out
