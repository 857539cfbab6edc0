"""Quality metrics: correlation metrics for validation and the NTIRE 2024 KVQ challenge score.

`correlation_metrics` gives SROCC / PLCC / KROCC / RMSE, with PLCC and RMSE taken after either
the reference trainer's linear rescale or a 4-parameter logistic fit. `challenge_score` is the
Codalab scorer of the challenge (reference `metric_score.py`, spec section 2.5):

    score = 0.45 * SROCC + 0.45 * PLCC + 0.05 * acc_nonsource + 0.05 * acc_source

with SROCC and PLCC on the raw predictions, and the pair accuracies taken over the `nonsource`
and `source` sheets of `rank-pair-val.xlsx` (predicted rank 1 when score(video1) >= score(video2),
else 2). Every input problem is collected and raised at once as a `ScoringError`.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

from kvq.core.errors import UserError

log = logging.getLogger(__name__)

PAIR_SHEETS = ("nonsource", "source")
PAIR_COLUMNS = ("video1", "video2", "rank")
TRUTH_CSV = "truth.csv"
PAIRS_XLSX = "rank-pair-val.xlsx"
MAX_LISTED = 10
WEIGHTS = {"SROCC": 0.45, "PLCC": 0.45, "acc_nonsource": 0.05, "acc_source": 0.05}


class ScoringError(UserError, ValueError):
    """Inputs of the challenge scorer are unusable; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the scoring inputs:\n{lines}")


# ----------------------------------------------------------------------------------------------
# Correlation metrics
# ----------------------------------------------------------------------------------------------

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
        "SROCC": _correlation(stats.spearmanr, p, g),
        "PLCC": _correlation(stats.pearsonr, fitted, g),
        "KROCC": _correlation(stats.kendalltau, p, g),
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


def _correlation(func, a: np.ndarray, b: np.ndarray) -> float:
    """First value of a scipy correlation; nan (not a crash or a warning) for constant input."""
    if np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(func(a, b)[0])


# ----------------------------------------------------------------------------------------------
# Challenge score
# ----------------------------------------------------------------------------------------------

def weighted_challenge_score(srocc: float, plcc: float, acc_nonsource: float, acc_source: float) -> float:
    """0.45 * SROCC + 0.45 * PLCC + 0.05 * acc_nonsource + 0.05 * acc_source."""
    return (WEIGHTS["SROCC"] * srocc + WEIGHTS["PLCC"] * plcc
            + WEIGHTS["acc_nonsource"] * acc_nonsource + WEIGHTS["acc_source"] * acc_source)


def challenge_score(pred: Mapping[str, float], truth: Mapping[str, float],
                    pairs: Mapping[str, pd.DataFrame]) -> dict:
    """The NTIRE 2024 KVQ challenge score of predictions {filename: score}.

    truth: {filename: MOS} in truth.csv order (the order SROCC/PLCC are computed in);
    pairs: {sheet name: DataFrame with video1, video2, rank}, as read from rank-pair-val.xlsx.
    Returns score, SROCC, PLCC, acc_nonsource, acc_source, n_videos, n_pairs_nonsource,
    n_pairs_source, n_ignored_predictions. Raises ScoringError listing every input problem.
    """
    problems = [f"prediction for {name!r} is not a finite number: {value!r}"
                for name, value in pred.items() if not _is_finite_number(value)]
    problems = _capped(problems, "non-finite predictions")
    sheets, sheet_problems = _parse_pair_sheets(pairs)
    problems += sheet_problems
    problems += _cross_check(set(pred), truth, sheets)
    if problems:
        raise ScoringError(problems)
    return _score(pred, truth, sheets)


def _score(pred: Mapping[str, float], truth: Mapping[str, float],
           sheets: Mapping[str, list[tuple[str, str, int]]]) -> dict:
    names = list(truth)
    gt = np.array([truth[n] for n in names], dtype=np.float64)
    scores = np.array([pred[n] for n in names], dtype=np.float64)
    srocc = _correlation(stats.spearmanr, gt, scores)
    plcc = _correlation(stats.pearsonr, gt, scores)
    if math.isnan(srocc) or math.isnan(plcc):
        log.warning("SROCC/PLCC undefined (constant predictions or constant truth): score is nan")
    acc = {}
    for sheet in PAIR_SHEETS:
        rows = sheets[sheet]
        hits = sum((1 if pred[v1] >= pred[v2] else 2) == rank for v1, v2, rank in rows)
        acc[sheet] = hits / len(rows)
    return {
        "score": weighted_challenge_score(srocc, plcc, acc["nonsource"], acc["source"]),
        "SROCC": srocc,
        "PLCC": plcc,
        "acc_nonsource": acc["nonsource"],
        "acc_source": acc["source"],
        "n_videos": len(names),
        "n_pairs_nonsource": len(sheets["nonsource"]),
        "n_pairs_source": len(sheets["source"]),
        "n_ignored_predictions": len(set(pred) - set(truth)),
    }


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value))


def _capped(problems: list[str], what: str) -> list[str]:
    """At most MAX_LISTED problems, then one line counting the rest."""
    if len(problems) <= MAX_LISTED:
        return problems
    return problems[:MAX_LISTED] + [f"... and {len(problems) - MAX_LISTED} more {what}"]


def _list_names(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:MAX_LISTED])
    return shown + (f" (+{len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")


def _parse_pair_sheets(pairs: Mapping[str, pd.DataFrame]
                       ) -> tuple[dict[str, list[tuple[str, str, int]]], list[str]]:
    """Rows (video1, video2, rank) of the `nonsource` and `source` sheets, and problems.

    Columns named video1/video2/rank are used when present, else the first three by position
    (as the reference does). Row numbers are spreadsheet rows (the header is row 1).
    Other sheets are ignored.
    """
    by_key = {str(name).strip().lower(): name for name in pairs}
    sheets: dict[str, list[tuple[str, str, int]]] = {}
    problems: list[str] = []
    for sheet in PAIR_SHEETS:
        if sheet not in by_key:
            problems.append(f"pairs: sheet {sheet!r} is missing (sheets present: {_list_names(pairs)})")
            continue
        df = pairs[by_key[sheet]]
        columns = _pair_columns(df)
        if columns is None:
            problems.append(f"pairs: sheet {sheet!r} needs columns video1, video2, rank "
                            f"(or at least 3 columns); it has {_list_names(map(str, df.columns))}")
            continue
        rows, row_problems = [], []
        for i, (v1, v2, rank) in enumerate(df[columns].itertuples(index=False, name=None)):
            where = f"pairs: sheet {sheet!r} row {i + 2}"
            name1, name2, rank_value = _cell_name(v1), _cell_name(v2), _cell_rank(rank)
            if name1 is None or name2 is None:
                row_problems.append(f"{where}: empty video name")
            elif rank_value is None:
                row_problems.append(f"{where}: rank must be 1 or 2, got {rank!r}")
            else:
                rows.append((name1, name2, rank_value))
        problems += _capped(row_problems, f"bad rows in sheet {sheet!r}")
        if not rows and not row_problems:
            problems.append(f"pairs: sheet {sheet!r} has no pairs")
        sheets[sheet] = rows
    return sheets, problems


def _pair_columns(df: pd.DataFrame) -> list | None:
    named = {str(c).strip().lower(): c for c in df.columns}
    if all(c in named for c in PAIR_COLUMNS):
        return [named[c] for c in PAIR_COLUMNS]
    if len(df.columns) >= 3:
        return list(df.columns[:3])
    return None


def _cell_name(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    name = str(value).strip()
    return name or None


def _cell_rank(value: object) -> int | None:
    try:
        rank = float(value)
    except (TypeError, ValueError):
        return None
    return int(rank) if rank in (1.0, 2.0) else None


def _cross_check(pred_names: Collection[str], truth: Mapping[str, float],
                 sheets: Mapping[str, list[tuple[str, str, int]]]) -> list[str]:
    """Truth videos missing from the prediction; pair videos absent from the truth.

    (Pair videos must be truth videos, and truth videos must be predicted, so every pair can
    be scored.)
    """
    problems = []
    if len(truth) < 2:
        problems.append(f"truth: needs at least 2 videos, has {len(truth)}")
    missing = [n for n in truth if n not in pred_names]
    if missing:
        problems.append(f"prediction is missing {len(missing)} of {len(truth)} truth videos: "
                        f"{_list_names(missing)}")
    for sheet, rows in sheets.items():
        unknown = list(dict.fromkeys(n for v1, v2, _ in rows for n in (v1, v2) if n not in truth))
        if unknown:
            problems.append(f"pairs: sheet {sheet!r} names {len(unknown)} video(s) not in the truth: "
                            f"{_list_names(unknown)}")
    return problems


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

@dataclass
class _ScoreTable:
    """A parsed `filename,score` CSV: valid scores, every filename seen, and problems."""

    scores: dict[str, float] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _parse_score_csv(path: str | Path) -> _ScoreTable:
    """Read a CSV with header columns filename and score (any order, extra columns ignored)."""
    path = Path(path)
    table = _ScoreTable()
    label = path.name
    if not path.is_file():
        table.problems.append(f"{label}: file not found: {path}")
        return table
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        columns = [c.strip().lower() for c in header] if header else []
        if "filename" not in columns or "score" not in columns:
            absent = [c for c in ("filename", "score") if c not in columns]
            table.problems.append(f"{label}: header must have columns filename and score; "
                                  f"missing {', '.join(absent)} (header: {header})")
            return table
        i_name, i_score = columns.index("filename"), columns.index("score")
        lines: dict[str, list[int]] = {}
        bad = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) <= max(i_name, i_score):
                bad.append(f"{label} line {line}: expected {len(columns)} fields, got {len(row)}")
                continue
            name, raw = row[i_name].strip(), row[i_score].strip()
            if not name:
                bad.append(f"{label} line {line}: empty filename")
                continue
            table.seen.add(name)
            lines.setdefault(name, []).append(line)
            try:
                value = float(raw)
            except ValueError:
                bad.append(f"{label} line {line}: score {raw!r} for {name!r} is not a number")
                continue
            if not math.isfinite(value):
                bad.append(f"{label} line {line}: score {raw!r} for {name!r} is not finite")
                continue
            table.scores.setdefault(name, value)
    duplicates = [f"{label}: duplicate filename {name!r} on lines {', '.join(map(str, at))}"
                  for name, at in lines.items() if len(at) > 1]
    table.problems += _capped(bad, f"bad lines in {label}")
    table.problems += _capped(duplicates, f"duplicated filenames in {label}")
    return table


def read_prediction_csv(path: str | Path) -> dict[str, float]:
    """{filename: score} from a prediction CSV (header filename,score); ScoringError on problems."""
    table = _parse_score_csv(path)
    if table.problems:
        raise ScoringError(table.problems)
    return table.scores


def _read_pairs_xlsx(path: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    if not path.is_file():
        return {}, [f"{path.name}: file not found: {path}"]
    try:
        return pd.read_excel(path, sheet_name=None), []
    except Exception as exc:  # any reader failure is reported as an input problem
        return {}, [f"{path.name}: cannot be read as an Excel workbook: {exc}"]


def _parse_truth_dir(truth_dir: str | Path) -> tuple[_ScoreTable, dict[str, pd.DataFrame], list[str]]:
    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        return _ScoreTable(), {}, [f"truth directory not found: {truth_dir}"]
    truth = _parse_score_csv(truth_dir / TRUTH_CSV)
    pairs, pair_problems = _read_pairs_xlsx(truth_dir / PAIRS_XLSX)
    return truth, pairs, truth.problems + pair_problems


def read_truth_dir(truth_dir: str | Path) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """(truth {filename: MOS} in file order, {sheet: DataFrame}) from truth.csv and
    rank-pair-val.xlsx in `truth_dir`; ScoringError on problems."""
    truth, pairs, problems = _parse_truth_dir(truth_dir)
    if problems:
        raise ScoringError(problems)
    return truth.scores, pairs


def score_files(prediction_csv: str | Path, truth_dir: str | Path) -> dict:
    """`challenge_score` of a prediction CSV against a truth directory.

    Every problem in both inputs (and between them) is raised together as one ScoringError.
    """
    pred = _parse_score_csv(prediction_csv)
    truth, pairs, problems = _parse_truth_dir(truth_dir)
    problems = pred.problems + problems
    sheets: dict[str, list[tuple[str, str, int]]] = {}
    if pairs:
        sheets, sheet_problems = _parse_pair_sheets(pairs)
        problems += sheet_problems
    if not truth.problems:
        problems += _cross_check(pred.seen, truth.scores, sheets)
    if problems:
        raise ScoringError(problems)
    return _score(pred.scores, truth.scores, sheets)
