"""Calibrated scores: a monotonic map from a model's raw outputs to the training MOS scale.

A model trained with the PLCC/rank losses outputs numbers on no particular scale; only their
order and linear correlation with MOS are trained. After training, `fit_calibration` fits a
4-parameter logistic (the VQEG form, `kvq.eval.correlations.logistic4`) from raw outputs to the MOS of
the **train split** (never the labels of a set being scored), falling back to a least-squares
line when the logistic fit fails, is flat or a near-step, runs against the data's direction or
fits worse than the line. Calibrated scores are clipped to the scale's [min, max].

The fit is stored in checkpoints as a small dict (`Calibration.to_dict`):
`{"kind": "logistic"|"linear", "params": [...], "scale": name, "min": .., "max": .., "n": ..}`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from kvq.eval.correlations import fit_logistic4, logistic4

log = logging.getLogger(__name__)

KINDS = {"logistic": 4, "linear": 2}  # kind -> number of parameters
MIN_LOGISTIC = 5  # fewer points than this: linear fit only
MIN_SLOPE_SCALE = 0.1  # a logistic with |b4| below this * std(raw) is a near-step: not used
CHECKPOINT_KEY = "calibration"


@dataclass(frozen=True)
class Calibration:
    """A fitted map raw -> MOS. logistic params (b1, b2, b3, b4) as in `logistic4`; linear
    params (slope, intercept). `n`: train videos it was fitted on."""

    kind: str
    params: tuple[float, ...]
    scale: str
    mos_min: float
    mos_max: float
    n: int

    def apply(self, raw: Sequence[float] | np.ndarray | float) -> np.ndarray:
        """Raw scores [N] (or a scalar) -> calibrated scores [N] (float64), clipped to the scale."""
        x = np.asarray(raw, dtype=np.float64)
        if self.kind == "logistic":
            y = logistic4(x, self.params)
        else:
            y = self.params[0] * x + self.params[1]
        return np.clip(y, self.mos_min, self.mos_max)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": [float(p) for p in self.params], "scale": self.scale,
                "min": float(self.mos_min), "max": float(self.mos_max), "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "calibration") -> "Calibration":
        """Inverse of `to_dict`; a malformed dict is a ValueError naming `source`."""
        missing = [k for k in ("kind", "params", "scale", "min", "max", "n") if k not in d]
        if missing:
            raise ValueError(f"{source}: calibration lacks {missing}")
        if d["kind"] not in KINDS:
            raise ValueError(f"{source}: calibration kind {d['kind']!r} is not one of {sorted(KINDS)}")
        params = tuple(float(p) for p in d["params"])
        if len(params) != KINDS[d["kind"]] or not np.all(np.isfinite(params)):
            raise ValueError(f"{source}: {d['kind']} calibration needs {KINDS[d['kind']]} finite params, "
                             f"got {list(d['params'])}")
        return cls(d["kind"], params, str(d["scale"]), float(d["min"]), float(d["max"]), int(d["n"]))

    def describe(self) -> str:
        params = ", ".join(f"{p:.4g}" for p in self.params)
        return (f"{self.kind} ({params}) to {self.scale} [{self.mos_min:g}, {self.mos_max:g}], "
                f"fitted on {self.n} train videos")


def fit_linear(raw: np.ndarray, mos: np.ndarray) -> tuple[float, float]:
    """Least-squares line mos ~ slope * raw + intercept; constant raw -> (0, mean(mos))."""
    if float(np.std(raw)) == 0.0:
        return 0.0, float(np.mean(mos))
    slope, intercept = np.polyfit(raw, mos, 1)
    return float(slope), float(intercept)


def _logistic_or_none(raw: np.ndarray, mos: np.ndarray, slope: float, intercept: float
                      ) -> Optional[tuple[float, ...]]:
    """The logistic fit's params, or None (with the reason logged) when it should not be used."""
    if len(raw) < MIN_LOGISTIC:
        log.info("calibration: %d videos are too few for a logistic fit; using a line", len(raw))
        return None
    try:
        params = fit_logistic4(raw, mos)
    except (RuntimeError, ValueError) as exc:
        log.warning("calibration: logistic fit failed (%s); using a line", exc)
        return None
    if abs(params[3]) < MIN_SLOPE_SCALE * float(np.std(raw)):
        log.warning("calibration: the logistic fit is a near-step (b4 %.3g, raw std %.3g) that would tie most "
                    "scores; using a line", params[3], float(np.std(raw)))
        return None
    grid = logistic4(np.linspace(raw.min(), raw.max(), 64), params)
    span = float(grid[-1] - grid[0])
    if abs(span) <= 1e-6 * max(float(np.ptp(mos)), 1e-12) or np.sign(span) != np.sign(slope):
        log.warning("calibration: the logistic fit is flat or runs against the data (span %.3g over the "
                    "train outputs, line slope %.3g); using a line", span, slope)
        return None
    rmse_logistic = float(np.sqrt(np.mean((logistic4(raw, params) - mos) ** 2)))
    rmse_linear = float(np.sqrt(np.mean((slope * raw + intercept - mos) ** 2)))
    if rmse_logistic > rmse_linear:
        log.warning("calibration: the logistic fit (RMSE %.4f) is worse than a line (%.4f); using the line",
                    rmse_logistic, rmse_linear)
        return None
    return tuple(float(p) for p in params)


def fit_calibration(raw: Sequence[float], mos: Sequence[float], scale: str = "MOS",
                    mos_range: Optional[tuple[float, float]] = None) -> Calibration:
    """Fit raw model outputs [N] to MOS [N] (train split). `mos_range` (min, max) bounds the
    calibrated scores; default: the range of `mos`. Raises ValueError for fewer than 2 videos
    or non-finite input."""
    x = np.asarray(raw, dtype=np.float64).ravel()
    y = np.asarray(mos, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"calibration: {x.size} raw scores but {y.size} MOS values")
    if x.size < 2:
        raise ValueError(f"calibration needs at least 2 videos, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("calibration: raw scores and MOS must be finite (found nan or inf)")
    lo, hi = mos_range if mos_range is not None else (float(y.min()), float(y.max()))
    if not lo <= hi:
        raise ValueError(f"calibration: scale min {lo} is above max {hi}")
    slope, intercept = fit_linear(x, y)
    if slope <= 0.0:
        log.warning("calibration: raw scores do not rise with MOS on the train split (line slope %.3g); "
                    "the calibrated scores follow the train data, not the model's ranking", slope)
    params = _logistic_or_none(x, y, slope, intercept)
    if params is not None:
        return Calibration("logistic", params, scale, lo, hi, int(x.size))
    return Calibration("linear", (slope, intercept), scale, lo, hi, int(x.size))


def checkpoint_calibration(obj: Any, source: str) -> Optional[Calibration]:
    """The calibration stored in a checkpoint object (train.py's best checkpoints), or None with
    a warning (checkpoints of the reference code or of runs with calibration disabled, `*_last.pth` states)."""
    data = obj.get(CHECKPOINT_KEY) if isinstance(obj, Mapping) else None
    if data is None:
        log.warning("%s has no calibration (not a best checkpoint of train.py with calibration enabled): "
                    "only raw scores are available", source)
        return None
    return Calibration.from_dict(data, source)


def calibration_indices(n: int, max_videos: Optional[int], seed: int) -> list[int]:
    """Indices of the train videos scored for the fit: all, or a seeded random `max_videos`
    of them in annotation order."""
    if max_videos is None or max_videos >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=max_videos, replace=False))


def mos_range(cfg: Mapping[str, Any], labels: Sequence[float]) -> tuple[float, float]:
    """(min, max) of the scale: `mos_scale.min/max` where set, else the train labels' range."""
    scale = cfg["mos_scale"]
    lo = float(scale["min"]) if scale["min"] is not None else float(min(labels))
    hi = float(scale["max"]) if scale["max"] is not None else float(max(labels))
    return lo, hi
