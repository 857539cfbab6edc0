"""Correlation metrics for validation and scoring: SROCC / PLCC / KROCC / RMSE, with PLCC and RMSE
taken after either the reference trainer's linear rescale or a 4-parameter logistic fit."""
from __future__ import annotations

import json
import logging
import math
import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

log = logging.getLogger(__name__)


def logistic4(x: np.ndarray | Sequence[float], params: Sequence[float]) -> np.ndarray:
    """4-parameter logistic b2 + (b1 - b2) * sigmoid((x - b3) / b4); x: [N] -> [N]."""
    b1, b2, b3, b4 = params
    return b2 + (b1 - b2) * expit((np.asarray(x, dtype=np.float64) - b3) / b4)


def _logistic4_curve(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    return logistic4(x, (b1, b2, b3, b4))


def fit_logistic4(pred: Sequence[float], gt: Sequence[float]) -> np.ndarray:
    """Least-squares fit of `logistic4` mapping pred -> gt; returns params [4] (b1, b2, b3, b4).

    Initial guess: plateaus at max/min of gt, centre at the median prediction, slope scale the
    prediction std, signed by the direction of the correlation. Raises ValueError on fewer than
    4 points (4 parameters) or constant predictions, and RuntimeError when the fit does not
    converge to finite values.
    """
    p, g = _as_pair(pred, gt)
    if len(p) < 4:
        raise ValueError(f"a 4-parameter logistic needs at least 4 points, got {len(p)}")
    scale = float(np.std(p))
    if scale == 0.0:
        raise ValueError("cannot fit a logistic to constant predictions")
    direction = 1.0 if float(np.dot(p - p.mean(), g - g.mean())) >= 0.0 else -1.0
    initial = [float(g.max()), float(g.min()), float(np.median(p)), direction * scale]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(_logistic4_curve, p, g, p0=initial, maxfev=20000)
    if not np.all(np.isfinite(params)) or params[3] == 0.0:
        raise RuntimeError(f"logistic fit gave unusable parameters {params.tolist()}")
    return params


def linear_rescale(pred: Sequence[float], gt: Sequence[float]) -> np.ndarray:
    """The reference trainer's rescale (p - mean(p)) / std(p) * std(gt) + mean(gt), population std.

    Constant predictions (std 0) map to mean(gt), the best constant predictor.
    """
    p, g = _as_pair(pred, gt)
    std_p = float(np.std(p))
    if std_p == 0.0:
        return np.full_like(p, float(np.mean(g)))
    return (p - np.mean(p)) / std_p * np.std(g) + np.mean(g)


CORRELATIONS = ("SROCC", "PLCC", "KROCC", "RMSE")  # what validation and scoring report


def selection_score(metrics: dict) -> float:
    """SROCC + PLCC, the validation score that picks the best epoch; nan (constant predictions)
    counts as worst, so a later epoch with defined correlations always replaces it."""
    return float(np.nan_to_num(metrics["SROCC"] + metrics["PLCC"], nan=-np.inf))


def correlation_metrics(pred: Sequence[float], gt: Sequence[float], fit: str = "linear") -> dict:
    """SROCC, PLCC, KROCC, RMSE of predictions [N] against ground truth [N].

    fit="linear": PLCC and RMSE after `linear_rescale` (PLCC is invariant to it).
    fit="logistic": PLCC and RMSE on `logistic4` fitted values; if the fit fails, a warning is
    logged and the linear rescale is used. SROCC and KROCC are always on the raw predictions.
    The dict's "fit" names the fit actually used. Undefined correlations (constant input) are nan;
    so is RMSE for constant ground truth, which any fit reproduces exactly (RMSE 0 whatever the model).
    """
    if fit not in ("linear", "logistic"):
        raise ValueError(f"fit must be 'linear' or 'logistic', got {fit!r}")
    p, g = _as_pair(pred, gt)
    if len(p) < 3:
        raise ValueError(f"correlation metrics need at least 3 items, got {len(p)}")
    used = "linear"
    fitted = None
    if fit == "logistic":
        try:
            fitted = logistic4(p, fit_logistic4(p, g))
            used = "logistic"
        except (RuntimeError, ValueError) as exc:
            log.warning("logistic fit failed (%s); falling back to the linear rescale", exc)
    if fitted is None:
        fitted = linear_rescale(p, g)
    return {
        "SROCC": safe_correlation(stats.spearmanr, p, g),
        "PLCC": safe_correlation(stats.pearsonr, fitted, g),
        "KROCC": safe_correlation(stats.kendalltau, p, g),
        "RMSE": math.nan if np.all(g == g[0]) else float(np.sqrt(np.mean((g - fitted) ** 2))),
        "fit": used,
        "n": len(p),
    }


def metrics_json(values: Mapping[str, float]) -> str:
    """One-line JSON of metric values; nan (undefined) becomes null, never the invalid `NaN`."""
    return json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()},
                      allow_nan=False)


def validation_metrics(pred: Sequence[float], gt: Sequence[float], fit: str = "linear") -> dict:
    """`correlation_metrics`, except that non-finite predictions (a diverged model) give nan
    metrics and a warning, not an error: training goes on (and under DDP no rank is left waiting);
    `selection_score` ranks such an epoch last."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    bad = int(np.sum(~np.isfinite(p)))
    if not bad:
        return correlation_metrics(pred, gt, fit)
    log.warning("%d of %d predictions are not finite (nan or inf; did training diverge?): metrics are nan",
                bad, p.size)
    return {**{k: math.nan for k in CORRELATIONS}, "fit": fit, "n": int(p.size)}


def _as_pair(pred: Sequence[float], gt: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    g = np.asarray(gt, dtype=np.float64).ravel()
    if p.shape != g.shape:
        raise ValueError(f"pred has {p.size} items but gt has {g.size}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(g))):
        raise ValueError("pred and gt must be finite (found nan or inf)")
    return p, g


def safe_correlation(func, a: np.ndarray, b: np.ndarray) -> float:
    """First value of a scipy correlation; nan (not a crash or a warning) for constant input."""
    if np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(func(a, b)[0])
