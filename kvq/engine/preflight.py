"""Preflight: check, before any work, everything on disk that a command will read.

For each split the command uses: the annotation file, every video it lists, every cached
feature file the dataset will read (SimpleVQA: `data_prefix_3D/<video>/feature_<i>_*.npy`), the
labels where they are needed; then every pretrained weight file the model will load, and the
checkpoint it starts from. All problems are raised together as one `PreflightError` (a
ConfigError: the command line exits with status 2), each with the command or change that fixes it,
so a missing val feature folder stops `train.py` at the start instead of after epoch 1.

    check_training(cfg, dist)          train.py / train_ddp.py: data.train and data.val, labelled; load_path
    check_scoring(cfg, split, ckpt)    test.py: the scored split (labels optional), the checkpoint
    check_pool(cfg, dist)              run_splits.py: the labelled lists of data.train/val/test it pools

Under DDP every rank checks and the ranks agree (one all-reduce) before anyone goes on: when a
rank finds a problem, every rank stops, none waits in a collective for the others.
Heavy modules (torch, the models) are imported on first use, so importing this one costs nothing.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from kvq.core.config import source_of
from kvq.core.errors import ConfigError

log = logging.getLogger(__name__)

SHOWN = 5  # missing files named per problem


class PreflightError(ConfigError):
    """What a command would need but is not on disk: every problem, each with its fix."""


def _examples(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def features_command(args: Mapping[str, Any]) -> str:
    """The SlowFast_features.py line that writes the features of one split's `data.<split>.args`:
    data_prefix_3D = <feature_save_folder>/<database>."""
    out = Path(args["data_prefix_3D"])
    return ("python SlowFast_features.py --video_root " + shlex.quote(str(Path(args["data_prefix"] or ".")))
            + " --video_csv " + shlex.quote(str(args["anno_file"]))
            + " --feature_save_folder " + shlex.quote(str(out.parent)) + " --database " + shlex.quote(out.name))


def split_problems(cfg: Mapping[str, Any], split: str, labels: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of `data.<split>`. labels: 'required' (train/val), 'optional' (scoring;
    then features missing for only some videos are a warning: those videos are reported when scored),
    'pooled' (run_splits: an unlabelled list is left out of the pool, so it is not checked)."""
    from datasets.annotations import AnnotationError, read_annotations
    from datasets.registry import DATASETS

    spec = cfg["data"][split]
    args = spec["args"]
    where = f"data.{split} ({args['anno_file']})"
    try:
        records = read_annotations(args["anno_file"], args["data_prefix"], args["anno_format"], check_files=False,
                                   allow_repeats=args["allow_repeats"])
    except AnnotationError as e:
        return [f"{where}: {e}"], []
    unlabeled = [r for r in records if r.label is None]
    if unlabeled and labels == "pooled":
        return [], []
    problems: list[str] = []
    warnings: list[str] = []
    if unlabeled and labels == "required":
        problems.append(f"{where}: {len(unlabeled)} of {len(records)} videos have no score, and data.{split} needs "
                        f"labels to train and validate. Fix: point data.{split}.args.anno_file at a labelled "
                        "list (header filename,score; KVQ: train_data.csv, val_data.csv)")
    missing = [r.path for r in records if not Path(r.path).is_file()]
    if missing:
        problems.append(f"{where}: {len(missing)} of {len(records)} video files do not exist under data_prefix "
                        f"'{args['data_prefix']}': {_examples(missing)}. Fix: put the videos there, or set "
                        f"data.{split}.args.data_prefix to their folder (docs/data.md)")
    dataset = DATASETS.get(spec["type"])
    lacking = [r for r in records if any(not p.is_file() for p in dataset.feature_files(args, r))]
    if lacking:
        first = next(p for p in dataset.feature_files(args, lacking[0]) if not p.is_file())
        text = (f"{where}: SlowFast features missing for {len(lacking)} of {len(records)} videos under "
                f"data_prefix_3D '{args['data_prefix_3D']}' (e.g. {first}). Fix: {features_command(args)}"
                " (with the flags the other splits' features were made with, e.g. --no_pretrained)")
        (warnings if labels == "optional" and len(lacking) < len(records) else problems).append(text)
    return problems, warnings


def duplicate_problems(cfg: Mapping[str, Any], splits: Sequence[str], against: Optional[str] = None,
                       labelled_only: bool = False) -> list[str]:
    """The same video twice (`datasets.protocol.duplicate_videos`): within one of `splits` (unless
    its allow_repeats), or in two of them (with `against`, only pairs with that split, e.g. 'train');
    labelled_only: unlabelled lists left out (run_splits does not pool them). Lists that cannot be
    read are reported by `split_problems`."""
    from datasets.annotations import AnnotationError, read_annotations
    from datasets.protocol import duplicate_videos, protocol_problem

    lists = {}
    for split in (s for s in splits if s in cfg["data"]):
        args = cfg["data"][split]["args"]
        try:
            records = read_annotations(args["anno_file"], args["data_prefix"], args["anno_format"],
                                       check_files=False, allow_repeats=True)
        except AnnotationError:
            continue
        if not (labelled_only and any(r.label is None for r in records)):
            lists[f"data.{split}"] = (args["anno_file"], records)
    allowed = [f"data.{s}" for s in splits if s in cfg["data"] and cfg["data"][s]["args"]["allow_repeats"]]
    pairs = duplicate_videos(lists, allowed, f"data.{against}" if against else None)
    return [protocol_problem(pairs)] if pairs else []


def weight_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Pretrained weight files the model will load that are not found (kvq.core.weights' search), and
    SimpleVQA views normalised otherwise than the spatial branch's weight record says."""
    from models.network import pretrained_weights
    from kvq.core.weights import MissingWeightsError, resolve_weight

    problems = []
    for record, path in pretrained_weights(cfg["model"]["args"], source_of(cfg)):
        try:
            resolve_weight(record, path)
        except MissingWeightsError as e:
            problems.append(f"model: {e}")
    return problems + normalization_problems(cfg)


def normalization_problems(cfg: Mapping[str, Any]) -> list[str]:
    """data.<split>.args.normalization of each SimpleVQA split against the mean/std of the weight
    record that a pretrained simpleVQA backbone loads (no check for random weights)."""
    from datasets.normalize import SIMPLEVQA
    from kvq.core.weights import WEIGHTS
    from models.simplevqa import SimpleVQABackbone

    entry = cfg["model"]["args"].get("simpleVQA")
    files = SimpleVQABackbone.pretrained_files((entry or {}).get("backbone") or {}) if entry is not None else []
    if not files:
        return []
    record = WEIGHTS[files[0][0]]
    fits = [n for n, norm in SIMPLEVQA.items() if (norm.mean, norm.std) == (tuple(record.mean), tuple(record.std))]
    problems = []
    for split, spec in cfg["data"].items():
        args = spec.get("args") or {}
        name = args.get("normalization") or "imagenet"
        if "simpleVQA" in (args.get("sample_types") or {}) and name not in fits:
            problems.append(f"data.{split}.args.normalization is '{name}', but the simpleVQA backbone's weights "
                            f"({record.name}) expect mean {tuple(record.mean)}, std {tuple(record.std)}. Fix: "
                            f"normalization: {fits[0] if fits else '<add one to datasets/normalize.py SIMPLEVQA>'}")
    return problems


def checkpoint_problem(path: Optional[str], what: str, fix: str) -> list[str]:
    """A checkpoint found as the commands find it (`kvq.core.weights.resolve_checkpoint`: a bare file
    name also in $KVQ_WEIGHTS_DIR, ...), else the problem with its fix."""
    from kvq.core.weights import MissingWeightsError, resolve_checkpoint

    if not path:
        return []
    try:
        resolve_checkpoint(path)
    except MissingWeightsError as e:
        return [f"{what}: {e}. Fix: {fix}"]
    return []


def check_training(cfg: Mapping[str, Any], dist_info: Any = None) -> None:
    """train.py / train_ddp.py: data.train and data.val (labelled), the weights, load_path."""
    problems, warnings = [], []
    for split in ("train", "val"):
        if split in cfg["data"]:
            p, w = split_problems(cfg, split, "required")
            problems, warnings = problems + p, warnings + w
    problems += duplicate_problems(cfg, ("train", "val", "test"), against="train")
    problems += weight_problems(cfg)
    problems += checkpoint_problem(cfg["load_path"], "load_path",
                                   "put the checkpoint there (docs/weights.md), or set load_path to null "
                                   "(--set load_path=null) to start from the backbones' own weights")
    _finish(cfg, problems, warnings, dist_info)


def check_scoring(cfg: Mapping[str, Any], split: str, checkpoint: str) -> None:
    """test.py on an annotation file: data.<split> (labels optional), the weights, the checkpoint."""
    problems, warnings = split_problems(cfg, split, "optional")
    problems += duplicate_problems(cfg, (split,))
    problems += weight_problems(cfg)
    problems += checkpoint_problem(checkpoint, "checkpoint",
                                   "train one first (python train.py -o CONFIG), or pass --checkpoint PATH")
    _finish(cfg, problems, warnings)


def check_pool(cfg: Mapping[str, Any], dist_info: Any = None) -> None:
    """scripts/run_splits.py: the labelled lists of data.train/val/test (those it pools), the weights."""
    problems, warnings = [], []
    for split in ("train", "val", "test"):
        if split in cfg["data"]:
            p, w = split_problems(cfg, split, "pooled")
            problems, warnings = problems + p, warnings + w
    problems += duplicate_problems(cfg, ("train", "val", "test"), labelled_only=True)
    problems += weight_problems(cfg)
    problems += checkpoint_problem(cfg["load_path"], "load_path", "put the checkpoint there, or --set load_path=null")
    _finish(cfg, problems, warnings, dist_info)


def _failed_ranks(failed: bool, dist_info: Any) -> int:
    """How many ranks found problems (every rank calls this: one all-reduce)."""
    if dist_info is None or not dist_info.enabled:
        return int(failed)
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = torch.tensor([int(failed)], device=device)
    dist.all_reduce(flag)
    return int(flag.item())


def _finish(cfg: Mapping[str, Any], problems: list[str], warnings: list[str], dist_info: Any = None) -> None:
    for w in warnings:
        log.warning("preflight: %s", w)
    failed = _failed_ranks(bool(problems), dist_info)
    if problems:
        raise PreflightError(f"{source_of(cfg)}: {len(problems)} problem(s) found before any work:\n"
                             + "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, start=1)))
    if failed:
        raise PreflightError(f"{source_of(cfg)}: preflight failed on {failed} other rank(s) (their log says what "
                             f"is missing there); rank {dist_info.rank} stops too")
