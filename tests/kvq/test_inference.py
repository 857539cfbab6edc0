from pathlib import Path

import pytest

from kvq.inference import expand_videos, video_records


def test_expand_videos_files_folders_globs(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.MP4", "sub/c.mkv", "skip.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = expand_videos([str(tmp_path / "b.mp4"), str(tmp_path), str(tmp_path / "**" / "*.mkv")])
    assert found == [str(tmp_path / "b.mp4"), str(tmp_path / "a.MP4"), str(tmp_path / "sub" / "c.mkv")]
    assert [r.label for r in video_records(found)] == [None, None, None]


def test_expand_videos_pattern_without_match_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        expand_videos([str(tmp_path / "nothing_here*.mp4")])
