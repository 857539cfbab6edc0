"""Annotation readers: KVQ csv, KSVQE 4-column, DOVER/FAST-VQA, unlabeled.

Formats (detected by `detect_format`, or named by `anno_format` in the config):
- kvq_csv:   header `filename,score[,...]` (extra columns ignored; a `group` column, the source/content
             id that grouped splits keep together, is kept; an empty cell means no group)
- ksvqe:     no header, `filename,cls_label,dis_label,score`
- dover:     no header, `filename,_,_,score` (same shape as ksvqe; the middle columns unused)
- unlabeled: header `filename` (or a bare list of file names), e.g. the challenge test set

Files are read by `kvq.core.io.read_text`: UTF-8 with or without BOM, or UTF-16 with BOM (other
bytes: a `TextEncodingError` naming the file and line); comma- or tab-separated (`csv_rows`).
Every problem is an `AnnotationError` naming the file and line. Missing video files are
reported all at once.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kvq.core.errors import UserError
from kvq.core.io import read_text

FORMATS = ("kvq_csv", "ksvqe", "dover", "unlabeled")


class AnnotationError(UserError, ValueError):
    """A malformed annotation file; the message names the file and line(s)."""


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video."""

    video_name: str  # as written in the annotation (relative to data_prefix)
    path: str  # data_prefix joined with video_name
    label: Optional[float]  # None when unlabeled
    cls_label: int = -1
    dis_label: int = -1
    group: Optional[str] = None
    line: int = 0
    feature_name: Optional[str] = None  # folder of its cached SlowFast features (default video_name)


FILENAME_HEADERS = ("filename", "file_name", "name", "video", "video_name")
UNLABELED_EXTRA_COLUMNS = ("group",)  # columns an unlabeled file may carry besides the file name


def csv_rows(path: Path, what: str = "annotation file") -> list[tuple[int, list[str]]]:
    """(line, stripped cells) of each non-blank row of a comma- or tab-separated text file read by
    `kvq.core.io.read_text` (UTF-8 with or without BOM, UTF-16 with BOM: Excel's "Unicode text"
    is tab-separated UTF-16). Tabs separate when the first non-blank line has a tab and no comma."""
    text = read_text(path, what)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return [(reader.line_num, [c.strip() for c in row]) for row in reader if row and any(c.strip() for c in row)]


_rows = csv_rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect_format(path: str | Path) -> str:
    """Guess the annotation format from the first row (see module docstring)."""
    rows = _rows(Path(path))
    if not rows:
        raise AnnotationError(f"{path}: the annotation file is empty")
    first = [c.lower() for c in rows[0][1]]
    if first and first[0] in FILENAME_HEADERS:
        if "score" in first or "mos" in first:
            return "kvq_csv"
        unknown = [c for c in rows[0][1][1:] if c.lower() not in UNLABELED_EXTRA_COLUMNS]
        if unknown:
            raise AnnotationError(
                f"{path}:1: header {rows[0][1]!r} has no 'score' (or 'mos') column but other columns "
                f"{unknown!r}; name the label column 'score', or keep only 'filename' for an unlabeled file")
        return "unlabeled"
    if len(first) == 4 and _is_number(rows[0][1][3]):
        return "ksvqe"
    if len(first) == 1:
        return "unlabeled"
    raise AnnotationError(
        f"{path}:1: cannot tell the annotation format from {rows[0][1]!r}; expected a header "
        "'filename,score', 4 columns 'filename,cls_label,dis_label,score', or set data.*.args.anno_format")


def _score(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{path}:{line}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path}:{line}: score {text!r} is not a finite number")
    return value


def _int(text: str, what: str, path: Path, line: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{path}:{line}: {what} {text!r} is not a number") from None
    if not value.is_integer():
        raise AnnotationError(f"{path}:{line}: {what} {text!r} is not an integer")
    return int(value)


def read_annotations(path: str | Path, data_prefix: str | Path = "", fmt: str = "auto",
                     check_files: bool = True, allow_repeats: bool = False) -> list[VideoRecord]:
    """Parse an annotation file into records (annotation order).

    Raises AnnotationError for malformed lines, bad scores, a file named twice (also as another
    spelling of the same path, `v0.mp4` and `./v0.mp4`; unless `allow_repeats`) and (with
    `check_files`) video files that do not exist, all missing files listed in one message.
    """
    path = Path(path)
    if path.is_dir():
        raise AnnotationError(f"annotation file '{path}' is a folder, not a file")
    if not path.is_file():
        raise AnnotationError(f"annotation file '{path}' does not exist")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"{path}: unknown annotation format '{fmt}' (known: {', '.join(FORMATS)})")
    rows = _rows(path)
    records: list[VideoRecord] = []
    header: list[str] = []
    if fmt in ("kvq_csv", "unlabeled") and rows and not _looks_like_data(rows[0][1], fmt):
        header = [c.lower() for c in rows[0][1]]
        rows = rows[1:]
    name_col = 0
    score_col = header.index("score") if "score" in header else (header.index("mos") if "mos" in header else 1)
    group_col = header.index("group") if "group" in header else None
    for line, row in rows:
        if fmt in ("ksvqe", "dover"):
            if len(row) != 4:
                raise AnnotationError(f"{path}:{line}: expected 4 fields 'filename,cls_label,dis_label,score', "
                                      f"got {len(row)}: {row!r}")
            name, label = row[0], _score(row[3], path, line)
            cls_label = _int(row[1], "cls_label", path, line) if fmt == "ksvqe" else -1
            dis_label = _int(row[2], "dis_label", path, line) if fmt == "ksvqe" else -1
            group = None
        elif fmt == "kvq_csv":
            if len(row) <= score_col:
                raise AnnotationError(f"{path}:{line}: expected at least {score_col + 1} fields "
                                      f"(filename,score), got {row!r}")
            name, label, cls_label, dis_label = row[name_col], _score(row[score_col], path, line), -1, -1
            group = (row[group_col] or None) if group_col is not None and group_col < len(row) else None
        else:
            name, label, cls_label, dis_label, group = row[name_col], None, -1, -1, None
        if not name:
            raise AnnotationError(f"{path}:{line}: empty file name")
        records.append(VideoRecord(name, str(Path(data_prefix) / name) if data_prefix else name, label,
                                   cls_label, dis_label, group, line))
    if not records:
        raise AnnotationError(f"{path}: no videos listed")
    seen: dict[str, int] = {}
    dups = []
    for r in records:
        key = os.path.normpath(r.video_name)
        if key in seen:
            dups.append(f"'{r.video_name}' on lines {seen[key]} and {r.line}")
        seen.setdefault(key, r.line)
    if dups and not allow_repeats:
        raise AnnotationError(f"{path}: duplicate file names: " + "; ".join(dups[:20])
                              + (f" (and {len(dups) - 20} more)" if len(dups) > 20 else "")
                              + "; remove the repeats, or set allow_repeats: true for this list")
    if check_files:
        missing = [f"line {r.line}: {r.path}" for r in records if not Path(r.path).is_file()]
        if missing:
            raise AnnotationError(
                f"{path}: {len(missing)} of {len(records)} video files do not exist (data_prefix "
                f"'{data_prefix}'):\n  " + "\n  ".join(missing[:50])
                + (f"\n  ... and {len(missing) - 50} more" if len(missing) > 50 else ""))
    return records


def _looks_like_data(row: list[str], fmt: str) -> bool:
    """True if the first row is data rather than a header."""
    if fmt == "kvq_csv":
        return len(row) > 1 and _is_number(row[1])
    return row[0].lower() not in FILENAME_HEADERS
