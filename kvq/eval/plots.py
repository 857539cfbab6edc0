"""Plots a person would rather look at than read: prediction-vs-MOS scatter, training curves."""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

from kvq.core.io import atomic_open
from kvq.eval.correlations import CORRELATIONS, fit_logistic4, linear_rescale, logistic4

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend, imported when a plot is made (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_plot(pred: Sequence[float], mos: Sequence[float], path: str | Path, title: str = "",
                 metrics: Optional[Mapping[str, float]] = None) -> Path:
    """Scatter of predictions (x) against MOS (y) with the fitted logistic (or linear) curve."""
    pred, mos = np.asarray(pred, float), np.asarray(mos, float)
    finite = np.isfinite(pred) & np.isfinite(mos)  # a diverged model's nan predictions are not drawn
    if not finite.all():
        title += f" ({int((~finite).sum())} non-finite predictions not shown)"
        pred, mos = pred[finite], mos[finite]
    fig, ax = _pyplot().subplots(figsize=(5, 4.5), dpi=110)
    ax.scatter(pred, mos, s=14, alpha=0.7, edgecolors="none")
    if pred.size >= 2:
        xs = np.linspace(pred.min(), pred.max(), 200)
        try:
            ax.plot(xs, logistic4(xs, fit_logistic4(pred, mos)), "r-", lw=1.5, label="4-parameter logistic fit")
        except (RuntimeError, ValueError):
            order = np.argsort(pred)
            ax.plot(pred[order], linear_rescale(pred, mos)[order], "r-", lw=1.5, label="linear rescale")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("MOS")
    if metrics:
        title = (title + "\n" if title else "") + "  ".join(
            f"{k} {metrics[k]:.3f}" for k in CORRELATIONS if k in metrics)
    ax.set_title(title, fontsize=9)
    if pred.size >= 2:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def curves_plot(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Training loss and validation SROCC/PLCC (model and EMA) per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = _pyplot().subplots(1, 2, figsize=(10, 4), dpi=110)
    a.plot(epochs, [h.get("train_loss", np.nan) for h in history], "o-")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    a.grid(alpha=0.3)
    for key, style in (("SROCC", "-"), ("PLCC", "--")):
        for tag in ("n", "s"):
            values = [h.get(f"{tag}_{key}", np.nan) for h in history]
            if np.isfinite(values).any():
                b.plot(epochs, values, style, marker="o", label=f"{key} ({'model' if tag == 'n' else 'EMA'})")
    b.set_xlabel("epoch")
    b.set_ylabel("validation")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def splits_box_plot(results: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Box plots over splits of the test SROCC, PLCC, KROCC (left) and RMSE (right), each split a dot."""
    fig, (a, b) = _pyplot().subplots(1, 2, figsize=(8, 4), dpi=110, gridspec_kw={"width_ratios": [3, 1]})
    rng = np.random.default_rng(0)  # horizontal jitter of the dots only
    for ax, keys in ((a, ("SROCC", "PLCC", "KROCC")), (b, ("RMSE",))):
        values = [[float(r[k]) for r in results] for k in keys]
        ax.boxplot(values, showmeans=True, widths=0.5)
        ax.set_xticks(range(1, len(keys) + 1), keys)
        for i, v in enumerate(values, start=1):
            ax.plot(i + rng.uniform(-0.08, 0.08, len(v)), v, "o", ms=4, alpha=0.6)
        ax.grid(alpha=0.3, axis="y")
    a.set_ylabel("test metric")
    fig.suptitle(title or f"{len(results)} splits", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: "Figure", path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    _pyplot().close(fig)
    return path
