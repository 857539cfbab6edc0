"""kvq.demo.ffmpeg.make_clip: the one ffmpeg clip maker (demo dataset, benchmarks, tests)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from kvq.demo.ffmpeg import FFmpegError, make_clip, part_path


def _decoded(path: Path) -> tuple[str, str, list[np.ndarray], float]:
    """(codec, pixel format, RGB frames, average frame rate) of the first video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.format.name, frames, float(stream.average_rate)


def test_lavfi_graph_to_h264_mp4_is_deterministic(tmp_path: Path) -> None:
    a = make_clip(tmp_path / "a.mp4", "testsrc2=size=48x64:rate=25", 12, rate=25)
    b = make_clip(tmp_path / "sub" / "b.mp4", "testsrc2=size=48x64:rate=25", 12, rate=25)
    codec, pix_fmt, frames, rate = _decoded(a)
    assert (codec, pix_fmt, len(frames), frames[0].shape, rate) == ("h264", "yuv420p", 12, (64, 48, 3), 25.0)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.mp4", "b.mp4", "sub"]  # no temporary left


def test_frames_are_piped_at_the_rate(tmp_path: Path) -> None:
    grey = [np.full((32, 48, 3), 40 + 20 * k, np.uint8) for k in range(6)]
    codec, _, frames, rate = _decoded(make_clip(tmp_path / "g.mkv", iter(grey), 6, rate=10, crf=0))
    assert (codec, len(frames), frames[0].shape, rate) == ("h264", 6, (32, 48, 3), 10.0)
    np.testing.assert_allclose([f.mean() for f in frames], [g.mean() for g in grey], atol=2)


def test_other_codecs_and_images(tmp_path: Path) -> None:
    codec, _, frames, _ = _decoded(make_clip(tmp_path / "m.avi", "testsrc=size=32x32:rate=30", 5,
                                             options=("-c:v", "mpeg4")))
    assert (codec, len(frames)) == ("mpeg4", 5)
    assert make_clip(tmp_path / "still.png", "testsrc=size=32x32:rate=30", 1).read_bytes()[:4] == b"\x89PNG"


def test_failure_raises_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    with pytest.raises(FFmpegError, match="no_such_source"):
        make_clip(out, "no_such_source=size=32x32", 3)
    assert not out.exists() and not part_path(out).exists()
