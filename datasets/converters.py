"""Converters from public VQA datasets' official metadata files to this project's annotation csv.

Output (`write_annotation_csv`): header `filename,score,group`, one row per video; `filename`
is relative to the dataset's video folder (the config's `data_prefix`), `group` is the
source/content id that grouped splits keep together (`datasets/splits.py`).
Or (`write_ksvqe_list`) KSVQE's list: no header, `filename,cls_label,dis_label,score` with
cls_label = the index of the video's source group (first_cls, first_cls + 1, ... in order of
first appearance) and dis_label = the video's position in its group (0 = the source; KVQ: the
processing workflow, which drives KSVQE's distortion contrastive loss), as the demo dataset's lists.

| format      | official file                                        | filename                  | group |
|-------------|------------------------------------------------------|---------------------------|-------|
| konvid      | KoNViD_1k_mos.csv (`flickr_id`, `mos`)               | `<flickr_id>.mp4`         | flickr_id (one video per content) |
| livevqc     | data.mat (`video_list`, `mos`; scipy.io.loadmat)     | the `video_list` entry    | the name without extension (one video per scene) |
| youtube_ugc | original_videos_MOS_for_YouTube_UGC_dataset.xlsx, sheet `MOS` (`vid`, `MOS full`) | `<vid>.mkv` | vid |
| lsvq        | labels_train_test.csv / labels_test_1080p.csv (`name`, `mos`[, `is_test`]) | `<name>.mp4` | name |
| kvq         | train_data.csv / val_data.csv (`filename`, `score`)  | as given                  | a `group` column if present, else inferred: 7 consecutive ids (source + 6 processed versions) |

`suffix` replaces the appended extension (e.g. YouTube-UGC's H.264 transcodes
`_crf_10_ss_00_t_20.0.mp4`). Rows without a score are skipped and reported, never silently.
Every problem is a `ConversionError` naming the file (and line or row).
"""
from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from datasets.annotations import AnnotationError, csv_rows
from kvq.core.io import atomic_open
from datasets.registry import CONVERTERS

KVQ_GROUP_SIZE = 7  # KVQ: each source clip followed by its 6 processed versions, consecutive ids


class ConversionError(AnnotationError):
    """An official metadata file that cannot be converted; the message names file and line."""


@dataclass(frozen=True)
class Row:
    filename: str
    score: float
    group: str
    position: Optional[int] = None  # place in its group (0 = the source); None: order of appearance


@dataclass
class Conversion:
    """Converted rows (file order) and the source rows skipped, as 'file:line: reason'."""

    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: "Conversion") -> None:
        self.rows += other.rows
        self.skipped += other.skipped


@dataclass(frozen=True)
class Options:
    suffix: Optional[str] = None  # extension appended to ids (None: the format's default)
    subset: str = "all"  # lsvq: all | train | test (the `is_test` column)
    group_size: int = KVQ_GROUP_SIZE  # kvq: videos per source group when inferred


def _score(text: Any, where: str) -> Optional[float]:
    """A finite float, None for an empty cell; anything else is an error at `where`."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConversionError(f"{where}: score {text!r} is not a number") from None
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        raise ConversionError(f"{where}: score {text!r} is not a finite number")
    return value


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(lower-cased header, [(line, {column: cell})]) of a csv with a header row."""
    rows = csv_rows(path, "source file")  # UTF-8 (BOM or not) or UTF-16 with BOM; comma or tab
    if not rows:
        raise ConversionError(f"{path}: the file is empty")
    header = [c.lower() for c in rows[0][1]]
    return header, [(line, dict(zip(header, row))) for line, row in rows[1:]]


def _need(header: Sequence[str], names: Sequence[str], path: Path, what: str) -> str:
    """The first of `names` present in `header` (lower case), else an error saying what is expected."""
    for name in names:
        if name in header:
            return name
    raise ConversionError(f"{path}: no {what} column (expected one of {', '.join(names)}; "
                          f"the header is {', '.join(header)})")


def _all_rows(row: dict[str, str]) -> bool:
    return True


def _scored_rows(path: Path, rows: Sequence[tuple[int, dict[str, str]]], name_col: str, score_col: str,
                 out: Conversion, keep: Callable[[dict[str, str]], bool] = _all_rows
                 ) -> Iterator[tuple[int, dict[str, str], str, float]]:
    """(line, row, name, score) of the kept rows; an empty name is an error at its line, a row
    without a score is skipped and listed in `out.skipped`."""
    for line, row in rows:
        if not keep(row):
            continue
        name = row.get(name_col, "")
        if not name:
            raise ConversionError(f"{path}:{line}: empty {name_col}")
        score = _score(row.get(score_col), f"{path}:{line}")
        if score is None:
            out.skipped.append(f"{path}:{line}: no {score_col} for '{name}'")
            continue
        yield line, row, name, score


def _id_rows(path: Path, id_columns: Sequence[str], score_columns: Sequence[str], suffix: str,
             keep: Callable[[dict[str, str]], bool] = _all_rows) -> Conversion:
    """Rows of a csv keyed by a content id: filename `<id><suffix>`, group `<id>`."""
    header, rows = _read_csv(path)
    id_col = _need(header, id_columns, path, "video id")
    score_col = _need(header, score_columns, path, "MOS")
    out = Conversion()
    for _, _, vid, score in _scored_rows(path, rows, id_col, score_col, out, keep):
        out.rows.append(Row(vid + suffix, score, vid))
    return out


@CONVERTERS.register("konvid")
def konvid(path: Path, opts: Options) -> Conversion:
    """KoNViD-1k `KoNViD_1k_mos.csv`: `flickr_id,mos` -> `<flickr_id>.mp4`; every video is its own content."""
    return _id_rows(path, ["flickr_id"], ["mos"], ".mp4" if opts.suffix is None else opts.suffix)


@CONVERTERS.register("lsvq")
def lsvq(path: Path, opts: Options) -> Conversion:
    """LSVQ `labels_train_test.csv` / `labels_test_1080p.csv`: `name,...,mos,...` -> `<name>.mp4`
    (names carry their folder, e.g. `yfcc-batch1/10011`); `subset` train/test reads `is_test`."""
    if opts.subset not in ("all", "train", "test"):
        raise ConversionError(f"lsvq subset must be all, train or test, got '{opts.subset}'")
    if opts.subset != "all":
        header, _ = _read_csv(path)
        if "is_test" not in header:
            raise ConversionError(f"{path}: --subset {opts.subset} needs an is_test column "
                                  "(labels_train_test.csv has one; labels_test_1080p.csv is all test)")

    def in_subset(row: dict[str, str]) -> bool:
        is_test = row.get("is_test", "").strip().lower() in ("1", "1.0", "true")
        return opts.subset == "all" or is_test == (opts.subset == "test")

    return _id_rows(path, ["name"], ["mos"], ".mp4" if opts.suffix is None else opts.suffix, in_subset)


@CONVERTERS.register("youtube_ugc")
def youtube_ugc(path: Path, opts: Options) -> Conversion:
    """YouTube-UGC `original_videos_MOS_for_YouTube_UGC_dataset.xlsx`, sheet `MOS`: `vid`,
    `MOS full` -> `<vid>.mkv` (the original videos); rows without `MOS full` are skipped."""
    from openpyxl import load_workbook

    suffix = ".mkv" if opts.suffix is None else opts.suffix
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises several kinds for a file that is not a workbook
        raise ConversionError(f"{path}: cannot read the workbook: {e}") from e
    if "MOS" not in book.sheetnames:
        raise ConversionError(f"{path}: no sheet 'MOS' (sheets: {', '.join(book.sheetnames)})")
    sheet = book["MOS"]
    out, header = Conversion(), None
    for r, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        cells = ["" if v is None else str(v).strip() for v in values]
        if header is None:
            lower = [c.lower() for c in cells]
            if "vid" in lower and "mos full" in lower:
                header = (lower.index("vid"), lower.index("mos full"))
            continue
        vid_col, mos_col = header
        vid = cells[vid_col] if vid_col < len(cells) else ""
        if not vid:
            if any(cells):
                out.skipped.append(f"{path}: sheet MOS row {r}: no 'vid' in {[c for c in cells if c]!r}")
            continue
        score = _score(values[mos_col] if mos_col < len(values) else None, f"{path}: sheet MOS row {r}")
        if score is None:
            out.skipped.append(f"{path}: sheet MOS row {r}: no 'MOS full' for '{vid}'")
            continue
        out.rows.append(Row(vid + suffix, score, vid))
    book.close()
    if header is None:
        raise ConversionError(f"{path}: sheet 'MOS' has no header row with 'vid' and 'MOS full'")
    return out


@CONVERTERS.register("livevqc")
def livevqc(path: Path, opts: Options) -> Conversion:
    """LIVE-VQC `data.mat`: `video_list` (cell of names, e.g. A001.mp4) and `mos`; every video
    is its own scene. With `suffix`, the name's extension is replaced by it."""
    import numpy as np
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several kinds for a file that is not a MAT-file
        raise ConversionError(f"{path}: cannot read the MAT-file: {e}") from e
    missing = [k for k in ("video_list", "mos") if k not in mat]
    if missing:
        raise ConversionError(f"{path}: no {' or '.join(missing)} variable "
                              f"(found: {', '.join(k for k in mat if not k.startswith('__'))})")
    names = [str(np.asarray(cell).squeeze()) for cell in np.asarray(mat["video_list"], dtype=object).ravel()]
    scores = np.asarray(mat["mos"], dtype=float).ravel()
    if len(names) != len(scores):
        raise ConversionError(f"{path}: video_list has {len(names)} entries but mos has {len(scores)}")
    out = Conversion()
    for i, (name, value) in enumerate(zip(names, scores), start=1):
        score = _score(value, f"{path}: entry {i} ('{name}')")
        stem = Path(name).stem
        if score is None:
            out.skipped.append(f"{path}: entry {i}: no mos for '{name}'")
            continue
        out.rows.append(Row(name if opts.suffix is None else stem + opts.suffix, score, stem))
    return out


KVQ_NAME = re.compile(r"^(?P<folder>(?:.*/)?)(?P<id>\d+)\.[A-Za-z0-9]+$")


def kvq_group(name: str, group_size: int = KVQ_GROUP_SIZE) -> Optional[str]:
    """'train/0009.mp4' -> 'train/0008-0014' (ids 1..7 form the first group, 8..14 the second,
    ...), None when the name is not `[folder/]<number>.<ext>` or the number is 0."""
    m = KVQ_NAME.match(name)
    if not m or int(m["id"]) == 0:
        return None
    first = (int(m["id"]) - 1) // group_size * group_size + 1
    width = len(m["id"])
    return f"{m['folder']}{first:0{width}d}-{first + group_size - 1:0{width}d}"


@CONVERTERS.register("kvq")
def kvq(path: Path, opts: Options) -> Conversion:
    """KVQ `train_data.csv` / `val_data.csv`: `filename,score` (e.g. `train/0001.mp4,3.36`).
    The group is the file's `group` column if it has one, else inferred from the naming:
    `group_size` consecutive numeric ids per folder are one source and its processed versions,
    the position in the group being (id - 1) mod group_size (0 = the source)."""
    header, rows = _read_csv(path)
    name_col = _need(header, ["filename", "name", "file_name", "video_name"], path, "file name")
    score_col = _need(header, ["score", "mos"], path, "score")
    out, bad = Conversion(), []
    for line, row, name, score in _scored_rows(path, rows, name_col, score_col, out):
        group = row.get("group") or kvq_group(name, opts.group_size)
        if group is None:
            bad.append(f"line {line}: '{name}'")
            continue
        position = None if row.get("group") else (int(KVQ_NAME.match(name)["id"]) - 1) % opts.group_size
        out.rows.append(Row(name if opts.suffix is None else str(Path(name).with_suffix(opts.suffix)), score, group,
                            position))
    if bad:
        raise ConversionError(
            f"{path}: cannot infer source groups for {len(bad)} file name(s) ({'; '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}): groups are inferred only from KVQ naming, "
            f"[folder/]<number>.<ext> with {opts.group_size} consecutive numbers (from 1) per source; "
            "add a 'group' column (source id) to the file instead")
    return out


def convert(fmt: str, sources: Sequence[str | Path], opts: Options = Options()) -> Conversion:
    """Convert one or more official files of one format; a file name listed twice is an error."""
    try:
        converter = CONVERTERS.get(fmt)
    except KeyError as e:
        raise ConversionError(str(e.args[0])) from None
    out = Conversion()
    for src in sources:
        src = Path(src)
        if not src.is_file():
            raise ConversionError(f"'{src}' does not exist")
        out.extend(converter(src, opts))
    counts = Counter(r.filename for r in out.rows)
    dups = sorted(name for name, n in counts.items() if n > 1)
    if dups:
        raise ConversionError(f"{', '.join(map(str, sources))}: file names listed more than once: "
                              + ", ".join(dups[:10]) + (f" (and {len(dups) - 10} more)" if len(dups) > 10 else ""))
    if not out.rows:
        raise ConversionError(f"{', '.join(map(str, sources))}: no labelled videos found")
    return out


def write_annotation_csv(path: str | Path, rows: Sequence[Row]) -> Path:
    """Write `filename,score,group` atomically (the `kvq_csv` annotation format)."""
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["filename", "score", "group"])
        for r in rows:
            w.writerow([r.filename, f"{r.score:.10g}", r.group])
    return path


def write_ksvqe_list(path: str | Path, rows: Sequence[Row], first_cls: int = 0) -> Path:
    """Write KSVQE's `filename,cls_label,dis_label,score` list (no header) atomically; see the
    module docstring. Returns the path."""
    path = Path(path)
    cls: dict[str, int] = {}
    seen: Counter = Counter()
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        for r in rows:
            label = cls.setdefault(r.group, first_cls + len(cls))
            w.writerow([r.filename, label, seen[r.group] if r.position is None else r.position, f"{r.score:.10g}"])
            seen[r.group] += 1
    return path
