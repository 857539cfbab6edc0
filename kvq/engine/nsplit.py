"""The n-split protocol: repeated grouped train/val/test splits of a config's labelled videos,
each trained through the normal engine (`kvq.engine.trainer.Trainer`), the checkpoint chosen on the
val part only (config `keep`: the best val epoch, or the final epoch's weights; model or EMA by
val SROCC+PLCC), the test part scored once with it.

Layout under the output folder:
    splits.json                      the pooled videos, their groups and the split settings
    split_00/{train,val,test}.csv    the parts (`.txt`, 4 columns, for ksvqe/dover lists)
    split_00/config.yml              the config reading them (data.train / data.val / data.test)
    split_00/checkpoint/             the Trainer's checkpoints, plots and history
    split_00/test_predictions.csv    the test part scored with the kept checkpoint
    split_00/result.json             written last (atomically): its presence marks the split done
    results.csv, results_box.png     per-split test metrics, then median / mean / std rows
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import yaml

from datasets.annotations import VideoRecord, detect_format, read_annotations
from datasets.converters import Row, write_annotation_csv
from datasets.splits import GROUP_BY, PARTS, grouped_n_splits
from kvq.api.scorer import Scorer
from kvq.config import Config, ConfigError, validate
from kvq.core.config import source_of
from kvq.core.distributed import DistInfo, shared_is_file
from kvq.core.io import atomic_open, atomic_write_text
from kvq.engine.train_state import TAG_NAMES
from kvq.engine.trainer import TrainOptions, Trainer
from kvq.eval.correlations import CORRELATIONS, correlation_metrics, selection_score
from kvq.eval.plots import splits_box_plot
from kvq.eval.predictions import write_predictions

log = logging.getLogger(__name__)

MIN_PART = 3  # correlation metrics need at least 3 videos


class SplitsError(ConfigError):
    """A pool of videos or an output folder that the n-split protocol cannot use."""


@dataclass
class Pool:
    """The labelled videos of a config's annotation files, all under one data_prefix."""

    records: list[VideoRecord]
    fmt: str  # annotation format the parts are written in: kvq_csv, ksvqe or dover
    sources: list[str]  # the annotation files pooled


@dataclass
class SplitOptions:
    out_dir: Path
    splits: int = 10
    val_frac: float = 0.1
    test_frac: float = 0.2
    seed: int = 42
    group_by: str = "group"
    progress: bool = True
    device_ids: list[int] = field(default_factory=list)  # DataParallel GPUs (one process)
    sync_bn: bool = False


def pool_records(cfg: Mapping[str, Any]) -> Pool:
    """Labelled videos of data.train, data.val and data.test (unlabelled lists are left out).

    The pooled files must share data_prefix and data_prefix_3D and one format; a video listed
    in two files is an error."""
    records: list[VideoRecord] = []
    sources: list[str] = []
    formats: dict[str, str] = {}
    prefixes: dict[tuple, list[str]] = {}
    for part in PARTS:
        spec = cfg["data"].get(part)
        if spec is None:
            continue
        args = spec["args"]
        recs = read_annotations(args["anno_file"], args["data_prefix"], args["anno_format"])
        if any(r.label is None for r in recs):
            log.info("data.%s (%s) is unlabelled: not pooled", part, args["anno_file"])
            continue
        fmt = detect_format(args["anno_file"]) if args["anno_format"] == "auto" else args["anno_format"]
        formats[args["anno_file"]] = fmt
        prefixes.setdefault((args["data_prefix"], args["data_prefix_3D"]), []).append(args["anno_file"])
        sources.append(args["anno_file"])
        records += recs
    source = source_of(cfg)
    if not records:
        raise SplitsError(f"{source}: no labelled annotation file in data.train/val/test to split")
    if len(prefixes) > 1:
        raise SplitsError(f"{source}: the pooled annotation files have different data_prefix / data_prefix_3D "
                          f"({'; '.join(f'{files}: {p}' for p, files in prefixes.items())}); put every video "
                          "in one annotation file under one data_prefix")
    if len(set(formats.values())) > 1:
        raise SplitsError(f"{source}: the pooled annotation files have different formats {formats}")
    seen: dict[str, VideoRecord] = {}
    dups = [r.video_name for r in records if seen.setdefault(r.video_name, r) is not r]
    if dups:
        raise SplitsError(f"{source}: videos listed in more than one pooled annotation file: {', '.join(dups[:10])}")
    return Pool(records, next(iter(formats.values())), sources)


def group_keys(pool: Pool, group_by: str) -> list[str]:
    """One group per video: the `group` column, the ksvqe `cls_label`, or the video itself ('none')."""
    if group_by == "none":
        return [r.video_name for r in pool.records]
    if group_by == "cls_label":
        missing = [r for r in pool.records if r.cls_label < 0]
        keys = [str(r.cls_label) for r in pool.records]
        hint = "--group-by cls_label needs ksvqe lists (filename,cls_label,dis_label,score)"
    elif group_by == "group":
        missing = [r for r in pool.records if r.group is None]
        keys = [str(r.group) for r in pool.records]
        hint = ("add a 'group' column (source/content id) to the annotation file, e.g. with "
                "scripts/convert_annotations.py; or --group-by none if every video is its own content")
    else:
        raise SplitsError(f"--group-by must be one of {', '.join(GROUP_BY)}, got '{group_by}'")
    if missing:
        raise SplitsError(f"{', '.join(pool.sources)}: {len(missing)} of {len(pool.records)} videos have no group "
                          f"(e.g. line {missing[0].line}: {missing[0].video_name}); {hint}")
    return keys


def write_part(path: Path, records: Sequence[VideoRecord], fmt: str, groups: Sequence[str]) -> Path:
    """An annotation file of `fmt` (kvq_csv: `filename,score,group`, `write_annotation_csv`;
    ksvqe/dover: 4 columns, the records' own cls_label and dis_label)."""
    if fmt == "kvq_csv":
        return write_annotation_csv(path, [Row(r.video_name, r.label, g) for r, g in zip(records, groups)])
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([r.video_name, r.cls_label, r.dis_label, repr(r.label)]
                                                     for r in records)
    return path


def part_files(split_dir: Path, fmt: str) -> dict[str, Path]:
    ext = ".csv" if fmt == "kvq_csv" else ".txt"
    return {part: split_dir / f"{part}{ext}" for part in PARTS}


def split_config(cfg: Config, files: Mapping[str, Path], fmt: str, index: int) -> Config:
    """The config with data.train/val/test reading this split's parts. Val and test use data.val's
    dataset settings (data.train's with phase 'test' when the config has no data.val)."""
    raw = copy.deepcopy(dict(cfg))
    train = raw["data"]["train"]
    evaluation = copy.deepcopy(raw["data"].get("val") or train)
    evaluation["args"]["phase"] = "test"
    data = {"train": train, "val": copy.deepcopy(evaluation), "test": copy.deepcopy(evaluation)}
    for part, spec in data.items():
        spec["args"]["anno_file"] = str(files[part])
        spec["args"]["anno_format"] = fmt
    raw["data"] = data
    raw["save_model"] = True
    return validate(raw, f"{source_of(cfg)} (split {index})")


def score_part(cfg: Config, part: str, checkpoint: Path, device: torch.device, predictions: Path,
               progress: bool = True, dist_info: Optional[DistInfo] = None) -> dict[str, float]:
    """Score data.<part> with `checkpoint` (`Scorer.predict_annotations`); write its predictions
    (in annotation order); return SROCC/PLCC/KROCC/RMSE. Under DDP every rank scores a shard (as
    validation does) and rank 0 writes and returns the metrics (other ranks: {})."""
    info = dist_info or DistInfo()
    scorer = Scorer(cfg, str(checkpoint), device, part, calibrated=False)
    preds, _ = scorer.predict_annotations(cfg["num_workers"], progress, skip=False, desc=part, dist_info=info)
    if not info.is_main:
        return {}
    write_predictions(predictions, preds.names, preds.scores)
    metrics = correlation_metrics(preds.scores, preds.labels, cfg["metrics_fit"])
    return {k: metrics[k] for k in CORRELATIONS}


def _manifest(cfg: Config, pool: Pool, groups: Sequence[str], opts: SplitOptions) -> dict[str, Any]:
    return {"seed": opts.seed, "val_frac": opts.val_frac, "test_frac": opts.test_frac, "group_by": opts.group_by,
            "config": json.loads(json.dumps(dict(cfg))), "format": pool.fmt,
            "videos": [[r.video_name, g, r.label] for r, g in zip(pool.records, groups)]}


def _check_manifest(path: Path, wanted: dict[str, Any]) -> None:
    """Refuse an output folder made with other videos, groups, settings or config."""
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    differs = [k for k in wanted if old.get(k) != wanted[k]]
    if differs:
        raise SplitsError(f"{path.parent} holds splits made with another {', '.join(differs)}; "
                          "use another --out (or delete the folder) to start afresh")


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def run_splits(cfg: Config, opts: SplitOptions, device: torch.device,
               dist_info: Optional[DistInfo] = None) -> list[dict[str, Any]]:
    """Train and test every split not finished yet; return the per-split results (rank 0; other
    ranks get an empty list). Finished splits (`result.json`) are read, not rerun; a split cut
    short resumes from its `*_last.pth`."""
    info = dist_info or DistInfo()
    pool = pool_records(cfg)
    groups = group_keys(pool, opts.group_by)
    try:
        splits = grouped_n_splits(groups, opts.splits, opts.val_frac, opts.test_frac, opts.seed)
    except ValueError as e:
        raise SplitsError(f"{', '.join(pool.sources)}: {e}") from None
    for i, parts in enumerate(splits):
        small = {p: len(ix) for p, ix in parts.items() if len(ix) < MIN_PART}
        if small:
            raise SplitsError(f"split {i}: parts with fewer than {MIN_PART} videos {small} (from "
                              f"{len(pool.records)} videos in {len(set(groups))} groups); raise --val-frac / "
                              "--test-frac or add videos")
    manifest = _manifest(cfg, pool, groups, opts)
    shared_is_file(opts.out_dir / "splits.json", info)  # every rank reads what rank 0 writes: one filesystem
    _check_manifest(opts.out_dir / "splits.json", manifest)
    if info.is_main:
        atomic_write_text(opts.out_dir / "splits.json", json.dumps(manifest, indent=1))
    _barrier(info)
    shared_is_file(opts.out_dir / "splits.json", info)
    results: list[dict[str, Any]] = []
    for i, parts in enumerate(splits):
        split_dir = opts.out_dir / f"split_{i:02d}"
        done = split_dir / "result.json"
        if shared_is_file(done, info):
            log.info("split %d/%d: finished earlier (%s), skipped", i + 1, opts.splits, done)
            results.append(json.loads(done.read_text()))
            continue
        files = part_files(split_dir, pool.fmt)
        if info.is_main:
            for part, indices in parts.items():
                write_part(files[part], [pool.records[k] for k in indices], pool.fmt, [groups[k] for k in indices])
        _barrier(info)
        result = _run_one(cfg, i, parts, groups, pool.fmt, files, split_dir, opts, device, info)
        if info.is_main:
            atomic_write_text(done, json.dumps(result, indent=1))
            results.append(result)
            log.info("split %d/%d test: %s", i + 1, opts.splits, ", ".join(f"{k} {result[k]:.4f}" for k in CORRELATIONS))
        _barrier(info)
    return results if info.is_main else []


def _run_one(cfg: Config, index: int, parts: Mapping[str, list[int]], groups: Sequence[str], fmt: str,
             files: Mapping[str, Path], split_dir: Path, opts: SplitOptions, device: torch.device,
             info: DistInfo) -> dict[str, Any]:
    """Train split `index`, pick the kept checkpoint (model or EMA, by val SROCC+PLCC), score the test part."""
    t0 = time.time()
    split_cfg = split_config(cfg, files, fmt, index)
    if info.is_main:  # to score the parts again: test.py -o split_NN/config.yml --checkpoint ...
        atomic_write_text(split_dir / "config.yml", yaml.safe_dump(dict(split_cfg), sort_keys=False))
    last = split_dir / "checkpoint" / f"{cfg['name']}_split_last.pth"
    train_opts = TrainOptions(output_dir=split_dir / "checkpoint", test_set="split",
                              resume_from=last if shared_is_file(last, info) else None, log_dir=split_dir / "log",
                              progress=opts.progress, sync_bn=opts.sync_bn, device_ids=opts.device_ids,
                              overwrite=True)  # its own folder (splits.json guards it): no last state = restart
    log.info("split %d/%d: %s", index + 1, opts.splits,
             ", ".join(f"{p} {len(ix)} videos / {len({groups[k] for k in ix})} groups" for p, ix in parts.items()))
    trainer = Trainer(split_cfg, train_opts, device, info)
    kept = trainer.train()
    chosen = [max(sorted(kept), key=lambda t: selection_score(kept[t])) if info.is_main else None]
    if info.enabled:  # only rank 0 knows the kept epochs
        dist.broadcast_object_list(chosen, src=0)
    tag = chosen[0]
    checkpoint = trainer.ckpt_path(tag)
    test = score_part(split_cfg, "test", checkpoint, device, split_dir / "test_predictions.csv",
                      opts.progress and info.is_main, info)
    if not info.is_main:
        return {}
    return {"split": index, **{f"n_{p}": len(ix) for p, ix in parts.items()},
            **{f"groups_{p}": len({groups[k] for k in ix}) for p, ix in parts.items()},
            "selected": TAG_NAMES[tag], "epoch": kept[tag]["epoch"],
            **{f"val_{k}": kept[tag][k] for k in ("SROCC", "PLCC")}, **test,
            "checkpoint": str(checkpoint), "seconds": round(time.time() - t0, 1)}


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """{metric: {median, mean, std}} of the test metrics over splits (std: sample, ddof 1)."""
    out = {}
    for key in CORRELATIONS:
        values = np.array([r[key] for r in results], dtype=float)
        out[key] = {"median": float(np.median(values)), "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out


RESULT_COLUMNS = ("split", "n_train", "n_val", "n_test", "groups_train", "groups_val", "groups_test", "selected",
                  "epoch", "val_SROCC", "val_PLCC", *CORRELATIONS)


def write_results(out_dir: Path, results: Sequence[Mapping[str, Any]], keep: str = "best") -> tuple[Path, Path]:
    """results.csv (one row per split, then median / mean / std rows of the test metrics) and
    results_box.png; both atomically."""
    summary = summarize(results)
    csv_path = out_dir / "results.csv"
    with atomic_open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(RESULT_COLUMNS)
        for r in results:
            w.writerow([f"{r[c]:.6f}" if isinstance(r[c], float) else r[c] for c in RESULT_COLUMNS])
        for stat in ("median", "mean", "std"):
            w.writerow([stat] + [""] * (len(RESULT_COLUMNS) - 1 - len(CORRELATIONS))
                       + [f"{summary[k][stat]:.6f}" for k in CORRELATIONS])
    plot = splits_box_plot(results, out_dir / "results_box.png",
                           f"{len(results)} grouped splits: test metrics "
                           f"({'epoch chosen on val' if keep == 'best' else 'final epoch'})")
    return csv_path, plot
