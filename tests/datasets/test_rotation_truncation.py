"""Truncated videos (fewer frames in the file than its container declares) and display rotation."""
import logging
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from datasets import build_dataset
from datasets.decoding import (DecordReader, PyAVReader, TruncatedVideoError, VideoReader, decode_sequential,
                               iter_frames, read_frames)
from datasets.frame_plan import FrameCount
from kvq.demo.ffmpeg import bundled_ffmpeg, ffmpeg_base, run_ffmpeg
from tests.media import make_video

FRAMES = 60


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """A faststart mp4 (its index, the moov atom, before the frames), B-frames, a keyframe every 12."""
    return make_video(tmp_path_factory.mktemp("t") / "whole.mp4", size="96x64", frames=FRAMES,
                      extra=("-g", "12", "-bf", "2", "-movflags", "+faststart"))


def cut(whole: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(whole.read_bytes()[:size])
    return dest


def packet_end(path: Path, fraction: float) -> int:
    """The end (in bytes) of the last packet that ends before `fraction` of the file."""
    limit = fraction * path.stat().st_size
    with av.open(str(path)) as container:
        return max(p.pos + p.size for p in container.demux(video=0) if p.size > 0 and p.pos + p.size <= limit)


@pytest.mark.parametrize("primary", ["decord", "pyav"])
@pytest.mark.parametrize("where", ["55% of the bytes", "a packet boundary"])
def test_truncated_video_is_an_error_even_when_the_frames_read_decode(whole: Path, tmp_path: Path, primary: str,
                                                                      where: str) -> None:
    """Cut mid-packet (decord then cannot open it) or between packets (both decoders read what is
    there without complaint): an error naming the file, also when only early frames are asked for."""
    size = int(0.55 * whole.stat().st_size) if where.startswith("55") else packet_end(whole, 0.55)
    v = cut(whole, tmp_path / "cut.mp4", size)
    with pytest.raises(TruncatedVideoError, match=rf"cut.mp4: truncated: decoded \d+ of {FRAMES} frames"):
        read_frames(str(v), lambda n: np.arange(3), primary)


@pytest.mark.parametrize("primary", ["decord", "pyav"])
def test_allow_truncated_reads_the_frames_the_file_holds(whole: Path, tmp_path: Path, primary: str,
                                                         caplog) -> None:
    v = cut(whole, tmp_path / "cut.mp4", int(0.55 * whole.stat().st_size))
    with caplog.at_level(logging.WARNING, logger="datasets.decoding"):
        reader = VideoReader(str(v), primary, allow_truncated=True)
    n = reader.num_frames
    assert 20 < n < FRAMES and f"decoded {n} of {FRAMES} frames" in caplog.text
    frames = reader.read(np.arange(n))
    full = np.stack(list(iter_frames(str(whole))))
    # the frames before the last group of pictures (whose B-frames may be cut) are the whole video's
    np.testing.assert_array_equal(frames[:n - 4], full[:n - 4])


def test_truncation_tolerance() -> None:
    assert not FrameCount(declared=0, present=10, frames=10).truncated  # the container does not say
    assert not FrameCount(declared=300, present=299, frames=299).truncated  # one frame: tolerated
    assert FrameCount(declared=300, present=297, frames=297).truncated
    assert not FrameCount(declared=1000, present=995, frames=995).truncated  # 0.5%
    assert FrameCount(declared=1000, present=994, frames=994).truncated


def test_whole_videos_are_not_truncated(whole: Path) -> None:
    assert VideoReader(str(whole)).num_frames == FRAMES
    with av.open(str(whole)) as container:
        assert container.streams.video[0].frames == FRAMES


def test_dataset_passes_allow_truncated(whole: Path, tmp_path: Path) -> None:
    cut(whole, tmp_path / "cut.mp4", int(0.55 * whole.stat().st_size))
    (tmp_path / "a.csv").write_text("filename,score\ncut.mp4,3.0\n")
    view = {"fragments_h": 2, "fragments_w": 2, "fsize_h": 16, "fsize_w": 16, "aligned": 4, "clip_len": 4,
            "frame_interval": 1, "num_clips": 1, "t_frag": None, "size_h": 32, "size_w": 32}

    def dataset(allow: bool):
        return build_dataset({"type": "ViewDecompositionDataset_KVQ", "args": {
            "phase": "test", "anno_file": str(tmp_path / "a.csv"), "data_prefix": str(tmp_path),
            "allow_truncated": allow, "sample_types": {"technical": view}}})

    with pytest.raises(TruncatedVideoError, match="cut.mp4"):
        dataset(False)[0]
    assert dataset(True)[0]["technical"].shape[1] == 4


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("r") / "land.mp4", size="96x64", frames=24, extra=("-g", "8", "-bf", "2"))


def rotated(landscape: Path, degrees: int) -> Path:
    """`landscape` with a display matrix turning it `degrees` counter-clockwise (stream copy)."""
    out = landscape.with_name(f"rot{degrees}.mp4")
    if not out.exists():
        run_ffmpeg(ffmpeg_base(bundled_ffmpeg()) + ["-display_rotation", str(degrees), "-i", str(landscape),
                                                    "-c", "copy", str(out)], f"rotate {degrees}")
    return out


def ffmpeg_frames(path: Path, height: int, width: int) -> np.ndarray:
    """Every frame as ffmpeg shows it (its autorotation on by default): uint8 [T, H, W, 3]."""
    cmd = ffmpeg_base(bundled_ffmpeg()) + ["-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_every_decoder_reads_frames_as_a_player_shows_them(landscape: Path, degrees: int) -> None:
    v = rotated(landscape, degrees)
    h, w = (96, 64) if degrees in (90, 270) else (64, 96)  # a landscape clip turned a quarter: portrait
    shown = ffmpeg_frames(v, h, w)
    everything = np.arange(24)
    decord = DecordReader(str(v))
    results = {
        "decord seeking": decord.read_seeking(everything),
        "decord": decord.read(everything),
        "pyav": PyAVReader(str(v)).read(everything),
        "sequential": decode_sequential(str(v), everything, 24),
        "iter_frames": np.stack(list(iter_frames(str(v)))),
        "read_frames pyav": read_frames(str(v), lambda n: everything, "pyav")[0],
    }
    assert shown.shape == (24, h, w, 3)
    for name, frames in results.items():
        assert frames.shape == shown.shape, name
        assert np.abs(frames.astype(int) - shown).mean() < 1.0, name
    np.testing.assert_array_equal(results["decord seeking"], results["pyav"])
    # and not the stored (landscape) frames
    stored = np.stack(list(iter_frames(str(landscape))))
    assert not np.array_equal(results["pyav"][:, :64, :64], stored[:, :64, :64])


def test_rotated_sparse_frames_agree(landscape: Path) -> None:
    """Sparse frames (decord seeks; the PyAV pass skips packets) come out turned the same way."""
    v = rotated(landscape, 90)
    unique = np.array([1, 9, 17, 23])
    np.testing.assert_array_equal(DecordReader(str(v)).read_seeking(unique), decode_sequential(str(v), unique, 24))


def test_only_a_last_packet_cut_short_is_left_out() -> None:
    """A corrupt-flagged last packet is the one a cut file ends in: not counted, not decoded;
    corrupt packets before it are counted and decoded (the decoder conceals what it can)."""
    from types import SimpleNamespace

    from datasets.frame_plan import count_frames, frame_packets

    def container(*corrupt: bool) -> SimpleNamespace:
        packets = [SimpleNamespace(size=10, pts=i, is_corrupt=c) for i, c in enumerate(corrupt)]
        flush = SimpleNamespace(size=0, pts=None, is_corrupt=False)
        return SimpleNamespace(demux=lambda stream: iter(packets + [flush]))

    stream = SimpleNamespace(frames=3)
    assert count_frames(container(False, True, False), stream) == FrameCount(3, 3, 3)
    assert count_frames(container(False, False, True), stream) == FrameCount(3, 2, 2)
    assert [p.pts for p in frame_packets(container(False, True, False), stream)] == [0, 1, 2]
    assert [p.pts for p in frame_packets(container(False, False, True), stream)] == [0, 1]
