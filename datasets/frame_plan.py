"""Which frames and packets to decode: the distinct requested frames (`unique_frames`), decord
seeking against one sequential pass (`choose_strategy`), and the packets such a pass needs
(`packet_plan`, `demux_plan`, `decoded_frames`). Used by the readers of datasets/decoding.py."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional, Sequence

import numpy as np


def unique_frames(indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """indices [T] -> (distinct frame numbers, sorted [U]; inverse [T]) with unique[inverse] == indices."""
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    return unique, inverse.reshape(-1)


SEQUENTIAL_SPEEDUP = 2.0  # decord seeking cost per decoded frame / a sequential PyAV pass's (measured 2.5)


def seek_cost(unique: np.ndarray, keyframes: Sequence[int]) -> int:
    """Frames decord decodes for sorted distinct frames `unique` given the keyframe indices: a
    frame in a later group of pictures is decoded from its keyframe, one in the current group
    from the frame after the previous one."""
    keys = np.asarray(sorted(keyframes) or [0], dtype=np.int64)
    group = np.searchsorted(keys, unique, side="right") - 1
    cost, pos, current = 0, -1, -1
    for frame, g in zip(unique.tolist(), group.tolist()):
        start = int(keys[max(g, 0)]) if g != current else pos + 1
        cost += frame - start + 1
        pos, current = frame, g
    return cost


def choose_strategy(unique: np.ndarray, keyframes: Sequence[int]) -> str:
    """"sequential" (one pass from frame 0 to the last requested one) when it decodes at most
    SEQUENTIAL_SPEEDUP times the frames seeking decodes, else "seek"."""
    return "sequential" if int(unique[-1]) + 1 <= SEQUENTIAL_SPEEDUP * seek_cost(unique, keyframes) else "seek"


NONREF_SKIP_CODECS = ("h264", "hevc")  # decoders whose skip_frame NONREF drops only frames no other frame references


class PacketPlan(NamedTuple):
    """What a sequential pass decodes: frame number by pts; per packet (decode order), send: decode
    it; needed: it holds a requested frame."""

    frame_of_pts: dict[int, int]
    send: np.ndarray
    needed: np.ndarray


def packet_plan(pts: Sequence[int], keyframe: Sequence[bool], unique: np.ndarray) -> PacketPlan:
    """The packets (decode order; distinct `pts`, keyframe flags) that sorted distinct frames
    `unique` need; frame number = rank of the packet's pts.

    A keyframe that no later packet shows a frame before (no leading pictures: a closed group of
    pictures, as x264 writes by default) starts a segment that needs nothing decoded before it;
    in each segment the packets after its last needed one are not decoded (the end of a group of
    pictures after the last requested frame, and groups without one). Open groups (leading
    pictures: x265's and MPEG-2's defaults) are decoded on from the segment before."""
    frame = np.empty(len(pts), dtype=np.int64)
    frame[np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")] = np.arange(len(pts))
    needed = np.isin(frame, unique)
    later_min = np.minimum.accumulate(np.append(frame, len(pts))[::-1])[::-1][1:]  # smallest frame after each packet
    starts = [0] + [j for j in range(1, len(pts)) if keyframe[j] and later_min[j] > frame[j]]
    send = np.zeros(len(pts), dtype=bool)
    for a, b in zip(starts, starts[1:] + [len(pts)]):
        hits = np.flatnonzero(needed[a:b])
        if len(hits):
            send[a:a + int(hits[-1]) + 1] = True
    return PacketPlan({int(p): int(f) for p, f in zip(pts, frame)}, send, needed)


TRUNCATION_TOLERANCE = 0.005  # missing frames (a fraction of those declared, at least 1) not called truncation


class FrameCount(NamedTuple):
    """A video stream's frames: declared by the container (0: it does not say: Matroska, WebM,
    MPEG-TS), packets wholly present in the file (empty ones included), frames those hold."""

    declared: int
    present: int
    frames: int

    @property
    def truncated(self) -> bool:
        """More frames missing than `TRUNCATION_TOLERANCE` of those declared (at least 1)."""
        return self.declared - self.present > max(1, int(TRUNCATION_TOLERANCE * self.declared))


def count_frames(container: Any, stream: Any) -> FrameCount:
    """`FrameCount` of `stream` from one demuxing pass (no decoding; about 3 ms on a 10 s
    540x960 H.264 clip); a last packet cut short is not counted (see `frame_packets`)."""
    present = frames = cut = 0
    for p in container.demux(stream):
        if p.size > 0 or p.pts is not None:  # not the demuxer's final flush packet
            present += 1
            if p.size > 0:
                frames += 1
                cut = int(p.is_corrupt)
    return FrameCount(max(0, int(stream.frames or 0)), present - cut, frames - cut)


def frame_packets(container: Any, stream: Any) -> Iterator[Any]:
    """The packets of `stream` that hold a frame (not empty), in decode order; the last one only
    when it is wholly in the file (not flagged corrupt: FFmpeg flags the packet a truncated file
    cuts short; corrupt packets elsewhere, e.g. MPEG-TS continuity errors, are decoded as before)."""
    held = None
    for packet in container.demux(stream):
        if packet.size > 0:
            if held is not None:
                yield held
            held = packet
    if held is not None and not held.is_corrupt:
        yield held


def decoded_frames(container: Any, stream: Any, plan: Optional[PacketPlan]) -> Iterator[tuple[int, Any]]:
    """(frame number, frame) in output order: with a plan, its packets (H.264/HEVC frames that are
    neither needed nor referenced skipped by FFmpeg's skip_frame NONREF), numbered by pts (-1: a
    pts no packet had); without one, every packet, numbered in output order."""
    codec = stream.codec_context
    skip_nonref = plan is not None and codec.name in NONREF_SKIP_CODECS
    stop = int(np.flatnonzero(plan.send)[-1]) if plan is not None else -1
    k = -1
    for j, packet in enumerate(frame_packets(container, stream)):
        if plan is not None:
            if j > stop:
                break
            if not plan.send[j]:
                continue
            if skip_nonref:
                codec.skip_frame = "DEFAULT" if plan.needed[j] else "NONREF"
        for frame in codec.decode(packet):
            k = plan.frame_of_pts.get(frame.pts, -1) if plan is not None else k + 1
            yield k, frame
    for frame in codec.decode(None):  # the frames still in the decoder
        k = plan.frame_of_pts.get(frame.pts, -1) if plan is not None else k + 1
        yield k, frame


def demux_plan(path: str, unique: np.ndarray) -> Optional[PacketPlan]:
    """`packet_plan` from a demuxing pass (no decoding); None when packets lack distinct pts."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in frame_packets(container, stream)]
    pts = [p for p, _ in packets]
    if not pts or None in pts or len(set(pts)) < len(pts):
        return None
    return packet_plan(pts, [k for _, k in packets], unique)
