from pathlib import Path

import numpy as np
import pytest

from datasets.decoding import DecordReader, PyAVReader, VideoDecodeError, decode_sequential, iter_frames, read_frames
from datasets.frame_plan import PacketPlan, choose_strategy, decoded_frames, demux_plan, packet_plan, seek_cost
from tests.media import make_video


@pytest.fixture(scope="module")
def red_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "red.mp4", source="color=c=red:size=32x48:rate=30", frames=10)


@pytest.mark.parametrize("reader", [DecordReader, PyAVReader])
def test_readers_return_rgb_uint8(red_video: Path, reader) -> None:
    r = reader(str(red_video))
    assert r.num_frames == 10
    frames = r.read([0, 3, 3, 9])
    assert frames.shape == (4, 48, 32, 3) and frames.dtype == np.uint8
    mean = frames.reshape(-1, 3).mean(0)
    assert mean[0] > 200 and mean[1] < 60 and mean[2] < 60, f"not RGB red: {mean}"


def test_decord_and_pyav_agree(tmp_path: Path) -> None:
    v = make_video(tmp_path / "a.mp4", size="64x96", frames=20)
    a = DecordReader(str(v)).read([1, 7, 19])
    b = PyAVReader(str(v)).read([1, 7, 19])
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_decord_reads_stay_valid_and_in_order_across_clips(tmp_path: Path) -> None:
    """Reading clip after clip from one reader (SlowFast extraction; the reader rewinds after each
    batch so that decord does not buffer the video ahead): frames equal those of fresh readers
    and each returned array keeps its own content."""
    v = make_video(tmp_path / "clips.mp4", size="64x96", frames=60)
    reader = DecordReader(str(v))
    clips = [reader.read(list(range(start, start + 8))) for start in (40, 0, 20, 52)]
    for clip, start in zip(clips, (40, 0, 20, 52)):
        assert np.array_equal(clip, DecordReader(str(v)).read(list(range(start, start + 8))))
    assert not np.array_equal(clips[0], clips[1])


def test_fallback_to_pyav_when_decord_fails(red_video: Path, monkeypatch) -> None:
    def broken(self, path):
        raise VideoDecodeError(f"{path}: decord broken")

    monkeypatch.setattr(DecordReader, "__init__", broken)
    frames, inds, n = read_frames(str(red_video), lambda n: np.arange(n))
    assert n == 10 and frames.shape[0] == 10 and frames[..., 0].mean() > 200


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 100])
def test_bad_files_raise_naming_the_file(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        read_frames(str(p), lambda n: np.arange(n))


def test_truncated_file_raises(tmp_path: Path) -> None:
    v = make_video(tmp_path / "t.mp4", size="64x96", frames=60, extra=("-movflags", "+faststart"))
    data = v.read_bytes()
    v.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="t.mp4"):
        read_frames(str(v), lambda n: np.arange(n))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="no such file"):
        read_frames(str(tmp_path / "nope.mp4"), lambda n: [0])


@pytest.mark.parametrize(
    "size, frames, extra",
    [
        ("16x16", 5, ()),  # tiny
        ("48x64", 5, ()),  # a size decord 0.6.0 opens but fails to decode: PyAV takes over
        ("64x96", 1, ()),  # single frame
        ("3840x2160", 2, ()),  # 4K
        ("72x128", 30, ("-vf", "setpts='PTS+0.02*N*N/TB'", "-fps_mode", "vfr")),  # variable frame rate
    ],
)
def test_unusual_videos_decode(tmp_path: Path, size: str, frames: int, extra: tuple) -> None:
    v = make_video(tmp_path / "u.mp4", size=size, frames=frames, extra=extra)
    out, inds, n = read_frames(str(v), lambda n: np.arange(n))
    w, h = map(int, size.split("x"))
    assert n == frames and out.shape == (frames, h, w, 3)


@pytest.mark.parametrize("image", ["png", "jpg"])
def test_still_image_named_like_a_video_is_refused(tmp_path: Path, image: str) -> None:
    from datasets.decoding import NotAVideoError

    still = make_video(tmp_path / f"still.{image}", frames=1).rename(tmp_path / "still.mp4")
    with pytest.raises(NotAVideoError, match=r"still.mp4: a still image \(FFmpeg format \w+_pipe\), not a video"):
        read_frames(str(still), lambda n: np.arange(n))


def test_decoder_messages_stay_off_stderr_unless_verbose(tmp_path: Path, capfd) -> None:
    """FFmpeg's "moov atom not found" and decord's "ERROR opening" lines are not printed by
    default; the VideoDecodeError says what is wrong. set_decoder_verbosity(True) shows them."""
    from datasets.decoding import set_decoder_verbosity

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    try:
        for verbose in (False, True):
            set_decoder_verbosity(verbose)
            with pytest.raises(VideoDecodeError, match="bad.mp4"):
                read_frames(str(bad), lambda n: np.arange(n))
            err = capfd.readouterr().err
            assert ("moov atom not found" in err and "ERROR opening" in err) == verbose, err
    finally:
        set_decoder_verbosity(False)


def test_seek_cost_and_strategy() -> None:
    # keyframes every 100 frames: 8 frames spread over 1000 -> seeking decodes far fewer frames
    keys = list(range(0, 1000, 100))
    sparse = np.arange(8) * 125 + 5
    assert seek_cost(sparse, keys) == sum(int(f) % 100 + 1 for f in sparse)
    assert choose_strategy(sparse, keys) == "seek"
    # one keyframe (a long interval) or dense frames: one sequential pass
    assert choose_strategy(sparse, [0]) == "sequential"
    assert choose_strategy(np.arange(0, 1000, 4), keys) == "sequential"
    # a frame in the current group of pictures continues from the previous one
    assert seek_cost(np.array([10, 20]), [0]) == 21


def test_sequential_and_seeking_give_the_same_bytes(tmp_path: Path) -> None:
    """The sequential PyAV pass the strategy picks for dense frames returns exactly decord's
    seeking frames, on a clip with several keyframes."""
    v = make_video(tmp_path / "k.mp4", size="64x96", frames=60, extra=["-g", "12", "-bf", "2"])
    reader = DecordReader(str(v))
    unique = np.array([0, 5, 13, 14, 30, 47, 59])
    np.testing.assert_array_equal(decode_sequential(str(v), unique, reader.num_frames), reader.read_seeking(unique))
    # and what read_unique returns (whichever strategy it picks) is the same too
    np.testing.assert_array_equal(reader.read_unique(unique), reader.read_seeking(unique))


def test_packet_plan_skips_the_ends_of_closed_groups_only() -> None:
    # decode order of I0 P3 B1 B2 | I4 P7 B5 B6 | I8 (display numbers; pts = 10 * display)
    frames = [0, 3, 1, 2, 4, 7, 5, 6, 8]
    keys = [f in (0, 4, 8) for f in frames]
    plan = packet_plan([10 * f for f in frames], keys, np.array([1, 8]))
    assert plan.frame_of_pts == {10 * f: f for f in frames}
    # frame 1 needs I0, P3 and itself; the second group is not decoded; then I8
    assert plan.send.tolist() == [True, True, True, False, False, False, False, False, True]
    assert plan.needed.tolist() == [False, False, True, False, False, False, False, False, True]
    # an open group: after I4 comes a frame shown before it (a leading picture, which may refer to
    # the group before), so the first group is decoded on to it
    frames = [0, 2, 1, 4, 3, 5]
    keys = [f in (0, 4) for f in frames]
    assert packet_plan(frames, keys, np.array([0, 3])).send.tolist() == [True, True, True, True, True, False]


@pytest.mark.parametrize("name, extra, skips", [
    ("x264.mp4", ("-g", "12", "-bf", "3"), True),  # closed groups, B-pyramid: unreferenced B-frames skipped
    ("x264_open.mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "20", "-bf", "3", "-x264-params",
                       "open-gop=1"), True),
    ("x265.mp4", ("-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "keyint=20:bframes=4:log-level=none"), True),
    ("mpeg4.avi", ("-c:v", "mpeg4", "-bf", "2", "-g", "15"), False),  # open groups: every frame up to the last
    ("vp9.webm", ("-c:v", "libvpx-vp9", "-g", "10", "-deadline", "realtime"), True),
])
def test_partial_sequential_pass_gives_the_frames_of_a_full_pass(tmp_path: Path, name: str, extra: tuple,
                                                                 skips: bool) -> None:
    """Decoding only what the requested frames need returns the bytes of decoding every frame."""
    import av

    v = str(make_video(tmp_path / name, size="96x64", frames=80, extra=extra))
    every = np.stack(list(iter_frames(v)))
    for unique in (np.array([3, 17, 40, 41, 66]), np.arange(0, 80, 4), np.array([79])):
        np.testing.assert_array_equal(decode_sequential(v, unique, len(every)), every[unique])
    sparse = np.array([3, 17, 40, 41, 66])
    with av.open(v) as container:
        decoded = [k for k, _ in decoded_frames(container, container.streams.video[0], demux_plan(v, sparse))]
    assert set(sparse) <= set(decoded) and (len(decoded) < 60) == skips


def test_frames_out_of_pts_order_are_decoded_again_in_full(tmp_path: Path, monkeypatch) -> None:
    """When the frames do not come out in the order of their packets' pts (the plan's numbering
    is wrong), the pass is redone decoding every frame, numbered in output order."""
    from datasets import decoding

    v = str(make_video(tmp_path / "k.mp4", size="96x64", frames=40, extra=("-g", "10", "-bf", "2")))
    every = np.stack(list(iter_frames(v)))

    def swapped_plan(path: str, unique: np.ndarray) -> PacketPlan:
        plan = demux_plan(path, unique)
        return plan._replace(frame_of_pts={p: f ^ 1 for p, f in plan.frame_of_pts.items()})  # 1, 0, 3, 2, ...

    monkeypatch.setattr(decoding, "demux_plan", swapped_plan)
    unique = np.array([2, 11, 25, 39])
    np.testing.assert_array_equal(decode_sequential(v, unique, 40), every[unique])
