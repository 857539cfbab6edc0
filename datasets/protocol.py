"""Protocol checks: the same video twice, in one annotation list or in two splits.

A video in both train and val (or test) leaks the evaluation; one listed twice in a list weighs
twice. Two entries are the same video when their paths resolve to the same file (`v0.mp4` and
`./v0.mp4`, a symbolic or hard link), or when two files have the same content (same size and the
same `kvq.core.io.content_digest`, computed only for files of equal size, so it stays cheap).
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Mapping, Optional, Sequence

from datasets.annotations import VideoRecord
from kvq.core.io import content_digest

SHOWN = 10  # pairs named per message


def _where(split: str, anno_file: str, record: VideoRecord) -> str:
    return f"'{record.video_name}' ({split}: {anno_file} line {record.line})"


def _file_key(path: str) -> tuple:
    """The file itself: (device, inode) when it exists, else its resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


def duplicate_videos(lists: Mapping[str, tuple[str, Sequence[VideoRecord]]],
                     repeats_allowed: Sequence[str] = (), against: Optional[str] = None) -> list[str]:
    """Pairs of entries that are the same video, each as 'A is the same video as B'.

    lists: split name -> (annotation file, its records). Two entries of one split are reported
    unless the split is in `repeats_allowed`; two of different splits when `against` is None or
    one of them (e.g. 'data.train': a train video in val or test leaks; val and test may share)."""
    entries = [(split, anno, r) for split, (anno, records) in lists.items() for r in records]
    groups: dict[tuple, list[tuple[str, str, VideoRecord]]] = defaultdict(list)
    for entry in entries:
        groups[_file_key(entry[2].path)].append(entry)
    by_size: dict[int, list[tuple]] = defaultdict(list)
    for key, members in groups.items():
        if key[0] == "inode":
            by_size[os.stat(members[0][2].path).st_size].append(key)
    for keys in (k for k in by_size.values() if len(k) > 1):  # equal sizes: compare content
        by_digest: dict[str, list[tuple]] = defaultdict(list)
        for key in keys:
            by_digest[content_digest(groups[key][0][2].path)[1]].append(key)
        for same in (d for d in by_digest.values() if len(d) > 1):
            for key in same[1:]:
                groups[same[0]] += groups.pop(key)
    pairs = []
    for members in groups.values():
        for i, first in enumerate(members):
            for other in members[i + 1:]:
                same_split = other[0] == first[0]
                if (same_split and first[0] in repeats_allowed) or (
                        not same_split and against is not None and against not in (first[0], other[0])):
                    continue
                pairs.append(f"{_where(*other)} is the same video as {_where(*first)}")
    return pairs


def protocol_problem(pairs: list[str]) -> str:
    """One message naming the first pairs of `duplicate_videos` and the fix."""
    shown = "; ".join(pairs[:SHOWN]) + (f"; ... ({len(pairs) - SHOWN} more)" if len(pairs) > SHOWN else "")
    return (f"the same video is listed twice ({len(pairs)}): {shown}. Fix: remove one of each pair (a video in "
            "two splits leaks the evaluation); to list a video more than once in one list on purpose, set "
            "data.<split>.args.allow_repeats: true")
