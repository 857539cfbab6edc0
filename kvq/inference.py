"""Scoring with a trained checkpoint: model loading and prediction CSVs."""
from __future__ import annotations

import csv
import glob
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from datasets.annotations import VideoRecord
from kvq.checkpoint import load_into, read_checkpoint
from kvq.device import to_channels_last
from kvq.io import atomic_open
from models import create_model

log = logging.getLogger(__name__)


def checkpoint_for_test(cfg: Mapping[str, Any], override: Optional[str] = None) -> str:
    """--checkpoint, else test_load_path, else load_path; an error if none is set."""
    path = override or cfg["test_load_path"] or cfg["load_path"]
    if not path:
        raise FileNotFoundError(f"{getattr(cfg, 'source', 'config')}: no checkpoint to score with: set "
                                "test_load_path (or load_path) in the config, or pass --checkpoint")
    return path


def load_model(cfg: Mapping[str, Any], checkpoint: str, device: torch.device) -> nn.Module:
    """The config's network with the checkpoint's weights, in eval mode on `device` (channels-last
    convolutions when the config says so)."""
    model = create_model(cfg)
    report = load_into(model, read_checkpoint(checkpoint))
    log.info("loaded %s: %s", checkpoint, report.summary())
    if cfg["channels_last"]:
        to_channels_last(model)
    return model.to(device).eval()


def write_predictions(path: str | Path, names: Sequence[str], scores: Sequence[float]) -> Path:
    """Write `filename,score` (header, one row per video, given order) atomically."""
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "score"])
        for name, score in zip(names, scores):
            w.writerow([name, f"{score:.6f}"])
    return path


VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".3gp", ".ts", ".mpg", ".mpeg")


def expand_videos(patterns: Sequence[str]) -> list[str]:
    """Files, folders (searched recursively for video extensions) and glob patterns -> sorted
    unique paths, pattern by pattern. A pattern that matches nothing is an error naming it."""
    found: list[str] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_file():
            matches = [str(p)]
        elif p.is_dir():
            matches = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            matches = sorted(f for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
        if not matches:
            raise FileNotFoundError(f"--videos {pattern}: no such file, or no video files match")
        found += [m for m in matches if m not in found]
    return found


def video_records(paths: Sequence[str]) -> list[VideoRecord]:
    """Unlabeled records for files given directly (video_name = the path as given)."""
    return [VideoRecord(video_name=p, path=p, label=None, line=i) for i, p in enumerate(paths, start=1)]


def write_errors(path: str | Path, errors: Sequence[tuple[str, str]]) -> Path:
    """Write `filename,error` for videos that could not be scored, atomically."""
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "error"])
        w.writerows(errors)
    return path
