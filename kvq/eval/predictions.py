"""Prediction CSVs: `filename,score[,calibrated_score]` written by test.py and the n-split
protocol, `filename,error` for videos that could not be scored, and the reader of score CSVs."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from kvq.core.errors import UserError
from kvq.core.io import atomic_open

MAX_LISTED = 10


class ScoringError(UserError, ValueError):
    """Inputs of the challenge scorer are unusable; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the scoring inputs:\n{lines}")


def capped(problems: list[str], what: str) -> list[str]:
    """At most MAX_LISTED problems, then one line counting the rest."""
    if len(problems) <= MAX_LISTED:
        return problems
    return problems[:MAX_LISTED] + [f"... and {len(problems) - MAX_LISTED} more {what}"]

@dataclass
class ScoreTable:
    """A parsed `filename,score` CSV: valid scores, every filename seen, and problems."""

    scores: dict[str, float] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def parse_score_csv(path: str | Path) -> ScoreTable:
    """Read a CSV with header columns filename and score (any order, extra columns ignored)."""
    path = Path(path)
    table = ScoreTable()
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
    table.problems += capped(bad, f"bad lines in {label}")
    table.problems += capped(duplicates, f"duplicated filenames in {label}")
    return table


def read_prediction_csv(path: str | Path) -> dict[str, float]:
    """{filename: score} from a prediction CSV (header filename,score); ScoringError on problems."""
    table = parse_score_csv(path)
    if table.problems:
        raise ScoringError(table.problems)
    return table.scores


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


def write_errors(path: str | Path, errors: Sequence[tuple[str, str]]) -> Path:
    """Write `filename,error` for videos that could not be scored, atomically."""
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "error"])
        w.writerows(errors)
    return path
