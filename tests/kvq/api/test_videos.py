"""kvq.api.videos: --videos paths expanded, records made."""
import logging
import os
from pathlib import Path

from kvq.api.videos import expand_videos, video_records


def test_expand_videos_files_folders_globs(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.MP4", "sub/c.mkv", "skip.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found, missing = expand_videos([str(tmp_path / "b.mp4"), str(tmp_path), str(tmp_path / "**" / "*.mkv")])
    assert found == [str(tmp_path / "b.mp4"), str(tmp_path / "a.MP4"), str(tmp_path / "sub" / "c.mkv")]
    assert missing == []
    assert [r.label for r in video_records(found)] == [None, None, None]


def test_expand_videos_lists_missing_paths_and_reports_duplicates(tmp_path: Path, monkeypatch, caplog) -> None:
    """A path that matches nothing is listed (not an abort); one file under several spellings
    (relative, ./, a symbolic link) is scored once, with a warning naming the repeats."""
    (tmp_path / "a.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "a.mp4", tmp_path / "link.mp4")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="kvq.api.videos"):
        found, missing = expand_videos(["a.mp4", "nothing_here*.mp4", "./a.mp4", str(tmp_path / "a.mp4"),
                                        "link.mp4", "a.mp4", "gone.mp4"])
    assert found == ["a.mp4"]
    assert [m[0] for m in missing] == ["nothing_here*.mp4", "gone.mp4"] and "no such file" in missing[0][1]
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "repeated paths (4)" in warning and "./a.mp4 (= a.mp4)" in warning and "link.mp4" in warning


def test_video_records_read_from_root(tmp_path: Path) -> None:
    records = video_records(["a.mp4", Path("sub/b.mp4")], root=tmp_path)
    assert [(r.video_name, r.path, r.line) for r in records] == [("a.mp4", str(tmp_path / "a.mp4"), 1),
                                                                 ("sub/b.mp4", str(tmp_path / "sub/b.mp4"), 2)]
