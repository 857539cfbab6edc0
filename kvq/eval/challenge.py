"""The NTIRE 2024 KVQ challenge score (the Codalab scorer of the challenge: reference
`metric_score.py`, spec section 2.5):

    score = 0.45 * SROCC + 0.45 * PLCC + 0.05 * acc_nonsource + 0.05 * acc_source

with SROCC and PLCC on the raw predictions, and the pair accuracies taken over the `nonsource`
and `source` sheets of `rank-pair-val.xlsx` (predicted rank 1 when score(video1) >= score(video2),
else 2). Every input problem is collected and raised at once as a `ScoringError`.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Collection, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from kvq.eval.correlations import safe_correlation
from kvq.eval.predictions import MAX_LISTED, ScoreTable, ScoringError, capped, parse_score_csv

log = logging.getLogger(__name__)

PAIR_SHEETS = ("nonsource", "source")
PAIR_COLUMNS = ("video1", "video2", "rank")
TRUTH_CSV = "truth.csv"
PAIRS_XLSX = "rank-pair-val.xlsx"
WEIGHTS = {"SROCC": 0.45, "PLCC": 0.45, "acc_nonsource": 0.05, "acc_source": 0.05}


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
    problems = capped(problems, "non-finite predictions")
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
    srocc = safe_correlation(stats.spearmanr, gt, scores)
    plcc = safe_correlation(stats.pearsonr, gt, scores)
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
        problems += capped(row_problems, f"bad rows in sheet {sheet!r}")
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


def _read_pairs_xlsx(path: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    if not path.is_file():
        return {}, [f"{path.name}: file not found: {path}"]
    try:
        return pd.read_excel(path, sheet_name=None), []
    except Exception as exc:  # any reader failure is reported as an input problem
        return {}, [f"{path.name}: cannot be read as an Excel workbook: {exc}"]


def _parse_truth_dir(truth_dir: str | Path) -> tuple[ScoreTable, dict[str, pd.DataFrame], list[str]]:
    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        return ScoreTable(), {}, [f"truth directory not found: {truth_dir}"]
    truth = parse_score_csv(truth_dir / TRUTH_CSV)
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
    pred = parse_score_csv(prediction_csv)
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
