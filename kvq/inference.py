"""Scoring with a trained checkpoint: model loading and prediction CSVs."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from kvq.checkpoint import load_into, read_checkpoint
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
    """The config's network with the checkpoint's weights, in eval mode on `device`."""
    model = create_model(cfg)
    report = load_into(model, read_checkpoint(checkpoint))
    log.info("loaded %s: %s", checkpoint, report.summary())
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
