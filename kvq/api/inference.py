"""Scoring with a trained checkpoint: model loading and prediction CSVs."""
from __future__ import annotations

import csv
import glob
import inspect
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datasets import collate
from datasets.annotations import VideoRecord
from datasets.decoding import VideoDecodeError
from datasets.features import MissingFeatureError
from datasets.kvq_datasets import SimpleVQADataset
from datasets.registry import DATASETS
from kvq.core.checkpoint import CheckpointMismatchError, extract_state_dict, load_checkpoint_file, load_into
from kvq.config import Config, ConfigError, apply_overrides, validate
from kvq.core.device import check_amp, configure_backends, to_channels_last
from kvq.eval.predict import Predictions, predict
from kvq.core.io import atomic_open
from kvq.features.slowfast import build_extractor, extract_features, feature_name, is_complete
from models import create_model
from models.registry import BACKBONES

log = logging.getLogger(__name__)


def checkpoint_for_test(cfg: Mapping[str, Any], override: Optional[str] = None) -> str:
    """--checkpoint, else test_load_path; an error if neither is set. `load_path` is never used
    to score: it is what training starts from (e.g. a backbone-only pretrained file)."""
    path = override or cfg["test_load_path"]
    if not path:
        note = (f" (load_path '{cfg['load_path']}' is not used to score: it is the checkpoint training starts "
                "from)" if cfg["load_path"] else "")
        raise FileNotFoundError(f"{getattr(cfg, 'source', 'config')}: no checkpoint to score with: pass "
                                f"--checkpoint or set test_load_path in the config{note}")
    return path


def checkpoint_config(obj: Any, checkpoint: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The validated config stored in a checkpoint written by train.py (with `overrides`, as
    --set); a ConfigError naming the file when it holds none. Backbones are built with
    `pretrained: false`: the checkpoint fills every weight (`load_model` is strict), so scoring
    needs none of the pretrained files training started from."""
    stored = obj.get("config") if isinstance(obj, Mapping) else None
    if not isinstance(stored, Mapping):
        raise ConfigError(f"{checkpoint} holds no config (not a checkpoint written by train.py): give the "
                          "config file too (test.py -o CONFIG, load_scorer(CONFIG, checkpoint=...))")
    cfg = validate(apply_overrides(dict(stored), overrides), f"{checkpoint} (stored config)")
    for key, entry in cfg["model"]["args"].items():  # every weight comes from the checkpoint itself
        if "pretrained" in inspect.signature(BACKBONES.get(key).__init__).parameters:
            entry["backbone"] = {**(entry.get("backbone") or {}), "pretrained": False}
    return cfg


def load_model(cfg: Mapping[str, Any], checkpoint: str, device: torch.device, obj: Any = None) -> nn.Module:
    """The config's network with the checkpoint's weights, in eval mode on `device` (channels-last
    convolutions when the config says so; its tf32 / cudnn_benchmark applied on CUDA). The checkpoint
    must fill every model key (`load_into(strict=True)`): CheckpointMismatchError naming the file
    otherwise. `obj`: the
    checkpoint file's content when already read (`load_checkpoint_file`), so it is read once."""
    model = create_model(cfg)
    try:
        report = load_into(model, extract_state_dict(load_checkpoint_file(checkpoint) if obj is None else obj),
                           strict=True)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{checkpoint}: {e}") from e
    log.info("loaded %s: %s", checkpoint, report.summary())
    if cfg["channels_last"]:
        to_channels_last(model)
    configure_backends(device, cfg["tf32"], cfg["cudnn_benchmark"])
    check_amp(device, cfg["amp"])
    return model.to(device).eval()


SCORING_SPLITS = ("test", "val", "train")


def scoring_spec(cfg: Mapping[str, Any], split: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """(split, data spec) used to score: `split`, else the first of test, val, train in the
    config; phase forced to 'test' (deterministic sampling, centre crops)."""
    if split is None:
        split = next((s for s in SCORING_SPLITS if s in cfg["data"]), None)
        if split is None:
            raise FileNotFoundError(f"{getattr(cfg, 'source', 'config')}: no data section (test, val or train) "
                                    "gives the views to score with")
    if split not in cfg["data"]:
        raise FileNotFoundError(f"{getattr(cfg, 'source', 'config')}: no data.{split} section to score")
    spec = cfg["data"][split]
    if spec["args"]["phase"] == "train":
        if split != "train":
            log.warning("data.%s.args.phase is 'train': scoring with phase 'test' (deterministic)", split)
        spec = {**spec, "args": {**spec["args"], "phase": "test"}}
    return split, spec


ANNOTATION_KEYS = ("anno_file", "anno_format", "data_prefix", "data_prefix_3D")


def train_scoring_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The train annotation scored as `scoring_spec(cfg)` scores (its views, phase 'test')."""
    _, spec = scoring_spec(cfg)
    train = cfg["data"]["train"]["args"]
    return {**spec, "args": {**spec["args"], **{k: train[k] for k in ANNOTATION_KEYS if k in train}}}


class SkipUnreadable(Dataset):
    """Wraps a dataset: a video that cannot be decoded, or whose cached features are missing,
    becomes a `{"bad_video": video_name, "error": message}` sample, which `collate` lists under
    'bad_videos' (so one bad file does not stop the others)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.dataset[index]
        except (VideoDecodeError, MissingFeatureError) as e:
            name = self.dataset.records[index].video_name
            log.warning("cannot score %s: %s", name, e)
            return {"bad_video": name, "error": str(e)}


def write_predictions(path: str | Path, names: Sequence[str], scores: Sequence[float],
                      calibrated: Optional[Sequence[float]] = None) -> Path:
    """Write `filename,score` (header, one row per video, given order) atomically; with
    `calibrated`, a third column `calibrated_score`."""
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "score"] + (["calibrated_score"] if calibrated is not None else []))
        for i, (name, score) in enumerate(zip(names, scores)):
            w.writerow([name, f"{score:.6f}"] + ([f"{calibrated[i]:.6f}"] if calibrated is not None else []))
    return path


VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".3gp", ".ts", ".mpg", ".mpeg")


def expand_videos(patterns: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, folders (searched recursively for video extensions) and glob patterns -> (unique
    paths, pattern by pattern, sorted within each; (pattern, error) for each pattern that matches
    nothing). A file reached twice (given twice, under another spelling such as a relative path
    or a link, or matched by two patterns) is scored once, with a warning listing the repeats."""
    found: dict[str, str] = {}  # resolved path -> path as first given
    repeats: list[str] = []
    missing: list[tuple[str, str]] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_file():
            matches = [pattern]
        elif p.is_dir():
            matches = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            matches = sorted(f for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
        if not matches:
            missing.append((pattern, "no such file, or no video files match"))
        for m in matches:
            key = os.path.realpath(m)
            if key in found:
                repeats.append(m if m == found[key] else f"{m} (= {found[key]})")
            else:
                found[key] = m
    if repeats:
        log.warning("videos given more than once are scored once; repeated paths (%d): %s", len(repeats),
                    ", ".join(repeats))
    for pattern, error in missing:
        log.error("--videos %s: %s", pattern, error)
    return list(found.values()), missing


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


def score_videos(model: nn.Module, records: Sequence[VideoRecord], spec: Mapping[str, Any], slowfast: SlowFastOptions,
                device: torch.device, amp: str = "off", batch_size: int = 1, num_workers: int = 0,
                progress: bool = True, skip: bool = True) -> tuple[Predictions, list[tuple[str, str]]]:
    """Score video files (`video_records`) with the views of `spec`, SimpleVQA's SlowFast
    features made first (`features_for_files`). skip: videos that cannot be scored are returned
    as (video, error) and the others scored; otherwise the first one raises VideoDecodeError."""
    records, spec, errors = features_for_files(records, spec, slowfast, device, progress)
    if errors and not skip:
        raise VideoDecodeError(f"{errors[0][0]}: {errors[0][1]}")
    dataset = DATASETS.get(spec["type"])(spec["args"], records=records)
    loader = DataLoader(SkipUnreadable(dataset) if skip else dataset, batch_size=batch_size, shuffle=False,
                        collate_fn=collate, num_workers=num_workers, pin_memory=device.type == "cuda")
    preds = predict(model, loader, device, amp, desc="score", progress=progress, errors=errors)
    return preds, errors
