"""Video files given on the command line (files, folders, glob patterns) -> annotation records."""
from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

from datasets.annotations import VideoRecord

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".3gp", ".ts", ".mpg", ".mpeg")


def expand_videos(patterns: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, folders (searched recursively for video extensions) and glob patterns -> (unique
    paths, pattern by pattern, sorted within each; (pattern, error) for each pattern that matches
    nothing). A file reached twice (given twice, under another spelling such as a relative path
    or a link, or matched by two patterns) is scored once, with a warning listing the repeats."""
    found: dict[str, str] = {}  # resolved path -> path as first given
    repeats: list[str] = []
    missing: list[tuple[str, str]] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_file():
            matches = [pattern]
        elif p.is_dir():
            matches = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            matches = sorted(f for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
        if not matches:
            missing.append((pattern, "no such file, or no video files match"))
        for m in matches:
            key = os.path.realpath(m)
            if key in found:
                repeats.append(m if m == found[key] else f"{m} (= {found[key]})")
            else:
                found[key] = m
    if repeats:
        log.warning("videos given more than once are scored once; repeated paths (%d): %s", len(repeats),
                    ", ".join(repeats))
    for pattern, error in missing:
        log.error("--videos %s: %s", pattern, error)
    return list(found.values()), missing


def video_records(paths: Sequence[str | Path], root: Optional[str | Path] = None) -> list[VideoRecord]:
    """Unlabeled records for files given directly: video_name = the path as given; read from
    `root` / path when `root` is given."""
    names = [str(p) for p in paths]
    return [VideoRecord(video_name=n, path=str(Path(root) / n) if root is not None else n, label=None, line=i)
            for i, n in enumerate(names, start=1)]
