"""Score videos from Python with a trained checkpoint.

    from kvq import load_scorer
    scorer = load_scorer("checkpoint/KSVQE_head_val-ltest_s_finetuned.pth")  # or a config file
    scorer.score("a.mp4")                                   # -> float, calibrated when possible
    result = scorer.score_many(["a.mp4", "b.mp4"], batch_size=4)
    result.scores, result.raw, result.errors

test.py (annotation and --videos modes) and the n-split protocol score through `Scorer` too:
the config's test (else val, else train) views with deterministic sampling
(`kvq.api.scoring.scoring_spec`), `kvq.api.scoring.score_dataset`, and the checkpoint's
calibration (kvq/eval/calibration.py) for scores on the training MOS scale.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from datasets import build_dataset
from datasets.decoding import VideoDecodeError
from datasets.registry import DATASETS
from kvq.api.loading import checkpoint_config, checkpoint_for_test, load_model
from kvq.api.scoring import score_dataset, scoring_spec
from kvq.api.videos import video_records
from kvq.config import Config, load_config
from kvq.core.checkpoint import load_checkpoint_file
from kvq.core.device import select_devices
from kvq.core.distributed import DistInfo
from kvq.eval.calibration import Calibration, checkpoint_calibration
from kvq.eval.predict import Predictions
from kvq.features.scored_files import SlowFastOptions, features_for_files

log = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yml", ".yaml")


@dataclass
class ScoreResult:
    """Scores of the videos that could be scored (input order) and the failures.

    paths: the scored videos as given; raw: model outputs; calibrated: on the training MOS
    scale (None when the checkpoint has no calibration); errors: (path, message) per failure."""

    paths: list[str] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    calibrated: Optional[list[float]] = None
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def scores(self) -> list[float]:
        """Calibrated scores when available, else raw ones."""
        return self.calibrated if self.calibrated is not None else self.raw

    def __len__(self) -> int:
        return len(self.paths)


class Scorer:
    """A model in eval mode plus the views and calibration to score video files with."""

    def __init__(self, cfg: Config, checkpoint: str, device: Optional[str | torch.device] = None,
                 split: Optional[str] = None, checkpoint_obj: Any = None,
                 slowfast: SlowFastOptions = SlowFastOptions(), calibrated: bool = True) -> None:
        """calibrated: read the checkpoint's calibration (a warning when it has none); without
        it, `calibration` is None and scores stay raw."""
        self.cfg = cfg
        self.slowfast = slowfast
        self.checkpoint = str(checkpoint)
        self.device = select_devices(None)[0] if device is None else torch.device(device)
        obj = load_checkpoint_file(checkpoint) if checkpoint_obj is None else checkpoint_obj
        self.model = load_model(cfg, self.checkpoint, self.device, obj)
        self.calibration: Optional[Calibration] = checkpoint_calibration(obj, self.checkpoint) if calibrated else None
        self.split, self.spec = scoring_spec(cfg, split)

    @property
    def scale(self) -> str:
        """What `score` returns: the calibration's scale name, or 'raw'."""
        return self.calibration.scale if self.calibration else "raw"

    def score(self, path: str | Path, root: str | Path | None = None) -> float:
        """One video's score: calibrated (training MOS scale) when the checkpoint has a
        calibration, else the raw output. A video that cannot be scored raises the error naming
        it: VideoDecodeError (missing or undecodable file)."""
        return self._run([path], 1, False, root, 0, skip=False).scores[0]

    def score_many(self, paths: Sequence[str | Path], batch_size: int = 1, progress: bool = True,
                   root: str | Path | None = None, num_workers: int = 0) -> ScoreResult:
        """Score `paths` (files; relative to `root` when given) in batches of `batch_size`, with
        a progress bar. Videos that cannot be scored are listed in `errors`, the others scored."""
        return self._run(paths, batch_size, progress, root, num_workers, skip=True)

    def predict_annotations(self, num_workers: int = 0, progress: bool = True, skip: bool = True,
                            desc: str = "score", dist_info: Optional[DistInfo] = None
                            ) -> tuple[Predictions, list[tuple[str, str]]]:
        """Raw predictions (with labels when the annotation file has them) of the videos of the
        scored split's annotation file, in its order, and (video, error) per video that could
        not be read (skip; otherwise the first one raises). dist_info: see `score_dataset`."""
        return score_dataset(self.model, build_dataset(self.spec), self.device, self.cfg["amp"], 1, num_workers,
                             progress, skip, desc, dist_info)

    def predict_files(self, paths: Sequence[str | Path], batch_size: int = 1, progress: bool = True,
                      root: str | Path | None = None, num_workers: int = 0, skip: bool = True
                      ) -> tuple[Predictions, list[tuple[str, str]]]:
        """Raw predictions of video files (names: the paths as given; read from `root` / path
        when `root` is given), SimpleVQA's SlowFast features made (or reused from the cache)
        first, and (video, error) per video that could not be scored. skip: collect unreadable
        videos instead of raising VideoDecodeError."""
        records, spec, errors = features_for_files(video_records(paths, root), self.spec, self.slowfast, self.device,
                                                   progress)
        if errors and not skip:
            raise VideoDecodeError(f"{errors[0][0]}: {errors[0][1]}")
        dataset = DATASETS.get(spec["type"])(spec["args"], records=records)
        preds, unreadable = score_dataset(self.model, dataset, self.device, self.cfg["amp"], batch_size, num_workers,
                                          progress, skip)
        return preds, errors + unreadable

    def _run(self, paths: Sequence[str | Path], batch_size: int, progress: bool, root: str | Path | None,
             num_workers: int, skip: bool) -> ScoreResult:
        """`predict_files`, calibrated when the checkpoint has a calibration."""
        preds, errors = self.predict_files(paths, batch_size, progress, root, num_workers, skip)
        calibrated = self.calibration.apply(preds.scores).tolist() if self.calibration else None
        return ScoreResult(preds.names, preds.scores, calibrated, errors)


def load_scorer(config_or_checkpoint: str | Path, checkpoint: Optional[str | Path] = None,
                device: Optional[str | torch.device] = None, split: Optional[str] = None,
                overrides: Sequence[str] = (), slowfast: SlowFastOptions = SlowFastOptions()) -> Scorer:
    """A `Scorer` from a checkpoint written by train.py (it holds its config), or from a config
    file (YAML) whose `test_load_path` names the checkpoint (or pass `checkpoint`; `load_path` is
    never used to score). The checkpoint must fill every model key (CheckpointMismatchError).
    device: None = CUDA when present, else the CPU. split: the data section whose views are used
    (default: test, else val, else train). overrides: `a.b=c` config overrides, as `--set`.
    slowfast: SimpleVQA only, which SlowFast network makes the features of scored files and where
    they are cached (default: Kinetics-400 weights; `SlowFastOptions(pretrained=False)` for
    checkpoints trained on `SlowFast_features.py --no_pretrained` features, e.g. the demo's)."""
    source = Path(config_or_checkpoint)
    if source.suffix.lower() in CONFIG_SUFFIXES:
        cfg = load_config(source, overrides)
        path = checkpoint_for_test(cfg, str(checkpoint) if checkpoint else None)
        return Scorer(cfg, path, device, split, slowfast=slowfast)
    if checkpoint is not None:
        raise ValueError(f"load_scorer({str(source)!r}, checkpoint=...): `checkpoint` goes with a config file")
    obj = load_checkpoint_file(source)
    return Scorer(checkpoint_config(obj, source, overrides), str(source), device, split, checkpoint_obj=obj,
                  slowfast=slowfast)
