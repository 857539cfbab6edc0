"""Temporal frame samplers (the reference's UnifiedFrameSampler formulas)."""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np


class UnifiedFrameSampler:
    """Split N frames into `fragments_t` segments of length N // fragments_t; take `fsize_t`
    frames at stride `frame_interval` in each, from an offset that is random in training
    (U{0 .. tlength - fsize_t*frame_interval - 1}, as the reference) and the centre of that range
    at test time; repeat `num_clips` times; indices wrap modulo N.

    __call__(num_frames, train) -> int32 [num_clips * fragments_t * fsize_t].
    """

    def __init__(self, fsize_t: int, fragments_t: int, frame_interval: int = 1, num_clips: int = 1) -> None:
        if fsize_t < 1 or fragments_t < 1 or frame_interval < 1 or num_clips < 1:
            raise ValueError(f"sampler sizes must be >= 1, got fsize_t={fsize_t}, fragments_t={fragments_t}, "
                             f"frame_interval={frame_interval}, num_clips={num_clips}")
        self.fsize_t = fsize_t
        self.fragments_t = fragments_t
        self.frame_interval = frame_interval
        self.num_clips = num_clips

    def frame_indices(self, num_frames: int, train: bool, rng: np.random.Generator) -> np.ndarray:
        """One clip's indices (before the modulo)."""
        tlength = num_frames // self.fragments_t
        tgrids = tlength * np.arange(self.fragments_t)
        span = self.fsize_t * self.frame_interval
        if tlength > span:
            if train:
                offsets = rng.integers(0, tlength - span, size=self.fragments_t)
            else:
                offsets = np.full(self.fragments_t, (tlength - span) // 2)
        else:
            offsets = np.zeros(self.fragments_t, dtype=np.int64)
        ranges = np.arange(self.fsize_t)[None, :] * self.frame_interval + offsets[:, None] + tgrids[:, None]
        return ranges.reshape(-1)

    def __call__(self, num_frames: int, train: bool = False, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        if num_frames < 1:
            raise ValueError("a video needs at least one frame")
        rng = rng if rng is not None else np.random.default_rng()
        inds = np.concatenate([self.frame_indices(num_frames, train, rng) for _ in range(self.num_clips)])
        return np.mod(inds, num_frames).astype(np.int32)


SAMPLER_OPTIONS = ("clip_len", "frame_interval", "num_clips", "t_frag")  # the view options build_sampler reads


def build_sampler(view_opts: Mapping) -> UnifiedFrameSampler:
    """The seed's two constructor forms.

    Without `t_frag` (DOVER convention): UnifiedFrameSampler(clip_len, num_clips, frame_interval),
    i.e. `num_clips` segments of one clip each. With `t_frag`:
    UnifiedFrameSampler(clip_len // t_frag, t_frag, frame_interval, num_clips).
    """
    if view_opts.get("t_frag") is None:
        return UnifiedFrameSampler(view_opts["clip_len"], view_opts["num_clips"], view_opts["frame_interval"])
    return UnifiedFrameSampler(view_opts["clip_len"] // view_opts["t_frag"], view_opts["t_frag"],
                               view_opts["frame_interval"], view_opts["num_clips"])
