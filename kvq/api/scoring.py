"""The one scoring path: the data spec that scores (a config's test, else val, else train views,
deterministic), and a dataset scored by a model through `eval_loader` and `predict`, unreadable
videos skipped and reported (`datasets.skipping.SkipUnreadable`)."""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import torch
from torch import nn

from datasets.skipping import SkipUnreadable
from kvq.core.config import source_of
from kvq.core.distributed import DistInfo, shard
from kvq.eval.predict import Predictions, eval_loader, gather_predictions, predict

log = logging.getLogger(__name__)

SCORING_SPLITS = ("test", "val", "train")
ANNOTATION_KEYS = ("anno_file", "anno_format", "data_prefix", "data_prefix_3D")


def scoring_split(cfg: Mapping[str, Any], split: Optional[str] = None) -> str:
    """`split`, else the first of test, val, train in the config; FileNotFoundError when the
    config has no such data section."""
    if split is None:
        split = next((s for s in SCORING_SPLITS if s in cfg["data"]), None)
        if split is None:
            raise FileNotFoundError(f"{source_of(cfg)}: no data section (test, val or train) "
                                    "gives the views to score with")
    if split not in cfg["data"]:
        raise FileNotFoundError(f"{source_of(cfg)}: no data.{split} section to score")
    return split


def scoring_spec(cfg: Mapping[str, Any], split: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """(split, data spec) used to score: `scoring_split`'s section, phase forced to 'test'
    (deterministic sampling, centre crops)."""
    split = scoring_split(cfg, split)
    spec = cfg["data"][split]
    if spec["args"]["phase"] == "train":
        if split != "train":
            log.warning("data.%s.args.phase is 'train': scoring with phase 'test' (deterministic)", split)
        spec = {**spec, "args": {**spec["args"], "phase": "test"}}
    return split, spec


def train_scoring_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The train annotation scored as `scoring_spec(cfg)` scores (its views, phase 'test')."""
    _, spec = scoring_spec(cfg)
    train = cfg["data"]["train"]["args"]
    return {**spec, "args": {**spec["args"], **{k: train[k] for k in ANNOTATION_KEYS if k in train}}}


def score_dataset(model: nn.Module, dataset: Any, device: torch.device, amp: str = "off", batch_size: int = 1,
                  num_workers: int = 0, progress: bool = True, skip: bool = True, desc: str = "score",
                  dist_info: Optional[DistInfo] = None) -> tuple[Predictions, list[tuple[str, str]]]:
    """Predictions of `model` on every video of `dataset` (one with `records`), in annotation
    order, and (video, error) for the videos that could not be read. skip: unreadable videos are
    listed and the others scored; otherwise the first one raises. Under DDP every rank scores a
    shard (as validation does) and rank 0 gets all predictions (other ranks: none); each rank
    lists its own errors."""
    info = dist_info or DistInfo()
    errors: list[tuple[str, str]] = []
    loader = eval_loader(shard(SkipUnreadable(dataset) if skip else dataset, info), device, batch_size, num_workers)
    preds = gather_predictions(predict(model, loader, device, amp, desc=desc, progress=progress,
                                       errors=errors if skip else None), info)
    if info.enabled and info.is_main:  # shards come back rank after rank
        order = {r.video_name: i for i, r in enumerate(dataset.records)}
        rows = sorted(zip(preds.names, preds.scores, preds.labels), key=lambda row: order[row[0]])
        preds = Predictions(*(list(column) for column in zip(*rows))) if rows else Predictions()
    return preds, errors
