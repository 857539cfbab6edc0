"""Video decoding: decord first, PyAV as the fallback. Always RGB uint8 [T, H, W, 3].

Each distinct requested frame is decoded and stored once (`read_unique`: the distinct frames plus
an index that maps requests to them, so overlapping clips cost no full-resolution copies); decord's
output buffer is handed over without a copy.

Decode strategy by sampling pattern (`choose_strategy`, datasets/frame_plan.py): decord seeks to each requested frame
(from its keyframe, or forward from the previous one in the same group of pictures); when the
frames are dense or the keyframe interval long, that decodes nearly every frame up to the last one
anyway, and one sequential PyAV pass (`decode_sequential`, FFmpeg's own frame/slice threads) is
faster: measured on a 10 s 540x960 H.264 clip, every frame: decord 2.45 s, PyAV 0.99 s (1 thread).
That pass decodes only what the requested frames need (`packet_plan`: not the end of a closed
group of pictures after its last requested frame, nor H.264/HEVC frames no other frame refers to).
Both convert with FFmpeg's swscale and give the same RGB bytes (tests/datasets/test_decoding.py). Every failure is a `VideoDecodeError` that names the
file; nothing is padded with zeros or silently dropped. A still image (PNG, JPEG, ... whatever its
file name) is not a video: FFmpeg opens it with an image demuxer (`image2` or `*_pipe`, e.g.
`png_pipe`), which is refused; a one-frame video in a video container is accepted.

Truncation: when a video is opened its packets are counted by demuxing (`count_frames`, a few ms);
one whose file holds fewer frames than its container declares (beyond `TRUNCATION_TOLERANCE`) is a
`TruncatedVideoError` ("decoded N of M frames"), unless `allow_truncated`: then its N frames are
read. Rotation: frames are as a player shows them, the display matrix applied (`frame_rgb`; decord
0.6.0 applies it itself, the same frames as FFmpeg's autorotation).

The decoders' own messages (FFmpeg's "[mov,mp4,...] moov atom not found", decord's "ERROR opening")
stay off stderr unless `set_decoder_verbosity(True)` (the CLIs' -v): the failure is reported once,
in the VideoDecodeError.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.dlpack import from_dlpack

from datasets.frame_plan import (FrameCount, choose_strategy, count_frames, decoded_frames, demux_plan,
                                 unique_frames)
from kvq.core.errors import UserError

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)


class VideoDecodeError(UserError, RuntimeError):
    """A video that cannot be decoded (corrupt, truncated, empty, not a video)."""


class NotAVideoError(VideoDecodeError):
    """A file that decodes, but as a still image."""


class TruncatedVideoError(VideoDecodeError):
    """A video whose file holds fewer frames than its container declares (cut short)."""


_verbose = False  # inherited by forked data-loader workers


def set_decoder_verbosity(verbose: bool) -> None:
    """verbose: FFmpeg/decord messages on stderr (decord's default ERROR level; PyAV's at WARNING,
    through Python logging as `libav.*`); otherwise (the default) none of them."""
    global _verbose
    _verbose = verbose
    import av.logging

    av.logging.set_level(av.logging.WARNING if verbose else None)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Unless verbose, point file descriptor 2 at /dev/null: decord prints its "ERROR opening"
    line from C++ (dmlc logging), which no setting turns off. Process-wide while it lasts, so it
    wraps only the opening of a file."""
    try:
        saved = -1 if _verbose else os.dup(2)
    except OSError:  # no stderr to silence
        saved = -1
    if saved < 0:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


IMAGE_DEMUXERS = ("image2",)  # and every "*_pipe" demuxer (png_pipe, jpeg_pipe, webp_pipe, ...)


def is_image_format(format_name: str) -> bool:
    """True for FFmpeg's still-image demuxers."""
    return any(n in IMAGE_DEMUXERS or n.endswith("_pipe") for n in format_name.split(","))


def decoder_threads() -> int:
    """FFmpeg decoding threads: torch's thread count (1 in data-loader workers, which already
    use the cores; all cores in a main process)."""
    return max(1, torch.get_num_threads())


def frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded PyAV frame as a player shows it: uint8 [H, W, 3] RGB turned by its display
    rotation (counter-clockwise, rounded to quarter turns; a view, not a copy, when turned)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.rot90(rgb, turns) if turns else rgb


def decode_sequential(path: str, unique: np.ndarray, num_frames: int) -> np.ndarray:
    """Sorted distinct frames -> uint8 [U, H, W, 3] RGB: one PyAV decoding pass up to the last
    one (FFmpeg threads: `decoder_threads`), keeping the requested frames, each converted to RGB
    straight into the output.

    When the packets have distinct pts, only the packets the requested frames need are decoded
    (`packet_plan`, `decoded_frames`): the same frames, far fewer decoded (measured on the benchmark's
    x264 clips: SimpleVQA's 8 frames and KSVQE's every 4th about twice as fast). Should the frames
    not come out in pts order, the pass is redone decoding every frame."""
    import av

    try:
        plan = demux_plan(path, unique)
        while True:
            out: Optional[np.ndarray] = None
            got = np.zeros(len(unique), dtype=bool)
            last, previous, ordered = int(unique[-1]), -1, True
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.thread_count = decoder_threads()
                for k, frame in decoded_frames(container, stream, plan):
                    if k <= previous:
                        ordered = False
                        break
                    previous = k
                    i = int(np.searchsorted(unique, k))
                    if i < len(unique) and unique[i] == k:
                        rgb = frame_rgb(frame)
                        if out is None:
                            out = np.empty((len(unique), *rgb.shape), dtype=np.uint8)
                        out[i] = rgb
                        got[i] = True
                    if k >= last:
                        break
            if ordered:
                break
            log.debug("%s: frames out of pts order; decoding every frame", path)
            plan = None
    except Exception as e:
        raise VideoDecodeError(f"{path}: PyAV failed while decoding: {e}") from e
    if not got.all():
        missing = unique[~got].tolist()
        raise VideoDecodeError(f"{path}: truncated or corrupt: frames {missing[:8]} of "
                               f"{num_frames} could not be decoded")
    return out


def iter_frames(path: str) -> Iterator[np.ndarray]:
    """Every frame in display order, uint8 [H, W, 3] RGB as shown (`frame_rgb`), from one PyAV
    decoding pass (FFmpeg threads: `decoder_threads`); a `VideoDecodeError` when decoding fails
    part-way. No truncation check: open a `VideoReader` first."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = decoder_threads()
            for frame in container.decode(stream):
                yield np.ascontiguousarray(frame_rgb(frame))
    except Exception as e:
        raise VideoDecodeError(f"{path}: PyAV failed while decoding: {e}") from e


def _check_file(path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: the file is empty (0 bytes)")


def probe_frames(path: str) -> FrameCount:
    """`count_frames` of the first video stream of `path`, opened with PyAV."""
    import av

    try:
        with av.open(path) as container:
            return count_frames(container, container.streams.video[0])
    except Exception as e:
        raise VideoDecodeError(f"{path}: PyAV cannot count its frames: {e}") from e


class _Reader:
    """`read` for readers that implement `read_unique(sorted distinct frame numbers)`."""

    def read_unique(self, unique: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` [T] in that order (duplicates repeated): uint8 [T, H, W, 3]."""
        unique, inverse = unique_frames(indices)
        return self.read_unique(unique)[inverse]


class DecordReader(_Reader):
    """decord.VideoReader wrapper (frame-accurate seeking, RGB)."""

    name = "decord"

    def __init__(self, path: str) -> None:
        import decord

        self.path = path
        decord.logging.set_level(decord.logging.ERROR if _verbose else decord.logging.QUIET)  # FFmpeg's messages
        try:
            with _quiet_stderr():
                self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
            self.num_frames = len(self._vr)
        except Exception as e:  # decord raises its own DECORDError and RuntimeError
            raise VideoDecodeError(f"{path}: decord cannot open it: {e}") from e
        if self.num_frames <= 0:
            raise VideoDecodeError(f"{path}: no video frames")

    def fps(self) -> float:
        return float(self._vr.get_avg_fps() or 0.0)

    def read_unique(self, unique: np.ndarray) -> np.ndarray:
        """Sorted distinct frames -> uint8 [U, H, W, 3]: one sequential pass when `choose_strategy`
        says so (decord seeking if that pass fails), else decord's seeking (its buffer, not copied)."""
        if choose_strategy(unique, self._vr.get_key_indices()) == "sequential":
            try:
                return decode_sequential(self.path, unique, self.num_frames)
            except VideoDecodeError as e:
                log.debug("%s; seeking with decord instead", e)
        return self.read_seeking(unique)

    def read_seeking(self, unique: np.ndarray) -> np.ndarray:
        """Sorted distinct frames -> uint8 [U, H, W, 3], decord seeking to each (its buffer, not copied)."""
        try:
            batch = self._vr.get_batch([int(i) for i in unique])
            # decord keeps decoding ahead in a background thread while the caller is busy (e.g. a
            # network forward between clips), buffering up to the whole video; rewinding stops it
            # (measured: 60 s 540x960 clip, peak RSS 3.2 GB -> 0.9 GB). The batch keeps its buffer.
            self._vr.seek(0)
        except Exception as e:
            raise VideoDecodeError(f"{self.path}: decord failed to decode frames {list(unique[:8])}...: {e}") from e
        return from_dlpack(batch.to_dlpack()).numpy()


class PyAVReader(_Reader):
    """PyAV reader: counts frames by demuxing (`count`), then decodes once, keeping requested frames."""

    name = "pyav"

    def __init__(self, path: str) -> None:
        import av

        self.path = path
        try:
            with av.open(path) as container:
                if is_image_format(container.format.name):
                    raise NotAVideoError(f"{path}: a still image (FFmpeg format {container.format.name}), "
                                         "not a video")
                if not container.streams.video:
                    raise VideoDecodeError(f"{path}: the file has no video stream")
                stream = container.streams.video[0]
                self._fps = float(stream.average_rate or 0.0)
                self.count = count_frames(container, stream)
                self.num_frames = self.count.frames
        except VideoDecodeError:
            raise
        except Exception as e:  # av.error.* for invalid data
            raise VideoDecodeError(f"{path}: PyAV cannot open it: {e}") from e
        if self.num_frames <= 0:
            raise VideoDecodeError(f"{path}: no video frames")

    def fps(self) -> float:
        return self._fps

    def read_unique(self, unique: np.ndarray) -> np.ndarray:
        """Sorted distinct frames -> uint8 [U, H, W, 3]; one decoding pass up to the last one."""
        return decode_sequential(self.path, unique, self.num_frames)


READERS = {"decord": DecordReader, "pyav": PyAVReader}


class VideoReader:
    """The primary reader, switching to the other one when opening or decoding fails.

    num_frames, fps(), read_unique(indices) -> (distinct frames uint8 [U, H, W, 3] RGB, inverse [T]),
    read(indices) -> uint8 [T, H, W, 3] RGB. A `TruncatedVideoError` when the file holds fewer
    frames than its container declares, unless allow_truncated (then the frames it holds are read).
    """

    def __init__(self, path: str, primary: str = "decord", allow_truncated: bool = False) -> None:
        _check_file(path)
        self.path = path
        self._order = [primary] + [n for n in READERS if n != primary]
        self._errors: list[str] = []
        self._reader = self._next_reader()
        count = self._reader.count if isinstance(self._reader, PyAVReader) else probe_frames(path)
        if count.truncated:
            message = f"{path}: truncated: decoded {count.frames} of {count.declared} frames"
            if not allow_truncated:
                raise TruncatedVideoError(f"{message} (allow_truncated: true scores the frames it holds)")
            log.warning("%s; reading those (allow_truncated)", message)
        self._limit = count.frames
        self.num_frames = self._frames(self._reader)
        if self.num_frames <= 0:
            raise VideoDecodeError(f"{path}: no video frames")

    def _frames(self, reader: DecordReader | PyAVReader) -> int:
        """The frames `reader` reads: its count, at most those wholly in the file."""
        return min(reader.num_frames, self._limit)

    def _next_reader(self) -> DecordReader | PyAVReader:
        while self._order:
            name = self._order.pop(0)
            try:
                return READERS[name](self.path)
            except NotAVideoError:
                raise
            except VideoDecodeError as e:
                self._errors.append(str(e))
                log.debug("%s", e)
        raise VideoDecodeError(f"{self.path}: cannot be decoded: " + " | ".join(self._errors))

    def fps(self) -> float:
        return self._reader.fps()

    def read(self, indices: Sequence[int]) -> np.ndarray:
        frames, inverse = self.read_unique(indices)
        return frames[inverse]

    def read_unique(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Decode each distinct frame of `indices` [T] once: (frames [U, H, W, 3] in frame order,
        inverse [T]); frames[inverse] are the requested frames."""
        while True:
            if self._frames(self._reader) != self.num_frames:
                log.warning("%s: %s counts %d frames, not %d; indices past the end use the last frame",
                            self.path, self._reader.name, self._frames(self._reader), self.num_frames)
                indices = np.minimum(np.asarray(indices), self._frames(self._reader) - 1)
            unique, inverse = unique_frames(indices)
            try:
                return self._reader.read_unique(unique), inverse
            except VideoDecodeError as e:
                self._errors.append(str(e))
                log.debug("%s", e)
                self._reader = self._next_reader()


def read_frames(path: str, indices_fn: Callable[[int], np.ndarray], primary: str = "decord",
                allow_truncated: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode the frames that `indices_fn(num_frames)` asks for, each distinct frame once
    (allow_truncated: see `VideoReader`).

    Returns (frames uint8 [U, H, W, 3] RGB, the distinct frames in frame order; inverse int [T]:
    requested frame t is frames[inverse[t]]; num_frames).
    """
    reader = VideoReader(path, primary, allow_truncated)
    frames, inverse = reader.read_unique(np.asarray(indices_fn(reader.num_frames)))
    return frames, inverse, reader.num_frames
