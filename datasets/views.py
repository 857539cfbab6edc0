"""Spatial views of a sampled clip. Input and output: uint8 [C, T, H, W] tensors.

Every view takes an optional `frame_index` [T]: frame t of the clip is video[:, frame_index[t]].
The dataset decodes each distinct frame once and passes that index, so clips that share frames
(overlapping segments, several views) cost no full-resolution copies; without it the clip is
`video` itself.

- technical: FAST-VQA fragments (grid of mini-patches), vectorised gather
- aesthetic: resize (squash) to size_h x size_w (KSVQE's 112x112 CLIP view)
- simpleVQA: squash-resize to resize x resize, then a random (train) / centre (test) crop

Randomness (training only) comes from the numpy Generator passed in; at test time every
view is deterministic.

Smallest frames (`min_frame_size`, checked by `check_frame_size` when a video is opened): the
technical, aesthetic and resized simpleVQA views rescale any frame (upscaling small ones), so 1x1
is enough; the native-size simpleVQA view (resize null) feeds the frames to the backbone as they
are, and a stride-32 backbone (ResNet-50 layer4, EfficientNet's last stage) turns a 32x32 frame
into a 1x1 map whose (unbiased) std is NaN: it needs NATIVE_MIN_SIDE = 33 px a side.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from datasets.decoding import VideoDecodeError

NATIVE_MIN_SIDE = 33  # a stride-32 backbone maps 33 px to 2 (std defined), 32 px to 1 (std NaN)


class VideoTooSmallError(VideoDecodeError):
    """A video whose frames are smaller than a view accepts (`min_frame_size`)."""


class NonFiniteViewError(VideoDecodeError):
    """A view (or a value computed from one video) that holds NaN or infinity."""


def upscale_to_cover(video: torch.Tensor, min_h: int, min_w: int) -> torch.Tensor:
    """Bilinear upscale [C,T,H,W] uint8 so that H >= min_h and W >= min_w (seed rule:
    scale by 1/min(H/min_h, W/min_w) when that ratio is < 1)."""
    h, w = video.shape[-2:]
    ratio = min(h / min_h, w / min_w)
    if ratio >= 1:
        return video
    out = F.interpolate(video.float().div_(255.0), scale_factor=1 / ratio, mode="bilinear")
    out = out.mul_(255.0).to(torch.uint8)
    if out.shape[-2] < min_h or out.shape[-1] < min_w:  # guard against floating-point floor
        out = F.interpolate(out.float(), size=(max(min_h, out.shape[-2]), max(min_w, out.shape[-1])),
                            mode="bilinear").to(torch.uint8)
    return out


def fragment_offsets(cell: int, fsize: int, shape: tuple, train: bool, rng: Optional[np.random.Generator]) -> np.ndarray:
    """Offsets of mini-patches inside their grid cell: U{0..cell-fsize-1} (train), centre (test)."""
    if cell <= fsize:
        return np.zeros(shape, dtype=np.int64)
    if train:
        return rng.integers(0, cell - fsize, size=shape)
    return np.full(shape, (cell - fsize) // 2, dtype=np.int64)


def clip_frames(video: torch.Tensor, frame_index: Optional[np.ndarray]) -> torch.Tensor:
    """Frame numbers of the clip in `video` [C,U,H,W]: int64 [T]."""
    if frame_index is None:
        return torch.arange(video.shape[1])
    return torch.from_numpy(np.asarray(frame_index, dtype=np.int64)).reshape(-1)


def spatial_fragments(video: torch.Tensor, fragments_h: int = 9, fragments_w: int = 9, fsize_h: int = 32,
                      fsize_w: int = 32, aligned: int = 8, train: bool = False,
                      rng: Optional[np.random.Generator] = None, frame_index: Optional[np.ndarray] = None,
                      **_: object) -> torch.Tensor:
    """FAST-VQA fragments: uint8 [C,U,H,W] -> uint8 [C,T,fragments_h*fsize_h,fragments_w*fsize_w].

    Mini-patch (i, j) comes from grid cell (i, j) (origin min(H//fragments_h*i, H-fsize_h)) at an
    offset shared by each block of `aligned` frames of the clip. Straight from the decoded frames,
    gathered in their [U, H, W, C] layout (a permuted view): one gather, or (one offset for all
    patches, as at test time) rows, then columns, then frames.
    """
    video = upscale_to_cover(video, fragments_h * fsize_h, fragments_w * fsize_w)
    frames = clip_frames(video, frame_index)
    c, _, h, w = video.shape
    t = len(frames)
    aligned = 1 if t == 1 else aligned
    blocks = math.ceil(t / aligned)
    hgrid = np.minimum((h // fragments_h) * np.arange(fragments_h), h - fsize_h)
    wgrid = np.minimum((w // fragments_w) * np.arange(fragments_w), w - fsize_w)
    rnd_h = fragment_offsets(h // fragments_h, fsize_h, (fragments_h, fragments_w, blocks), train, rng)
    rnd_w = fragment_offsets(w // fragments_w, fsize_w, (fragments_h, fragments_w, blocks), train, rng)
    pixels = video.permute(1, 2, 3, 0)  # [U, H, W, C]: the decoder's layout, whole rows contiguous
    if (rnd_h == rnd_h.flat[0]).all() and (rnd_w == rnd_w.flat[0]).all():
        # one offset for every patch (always at test time): the grid is separable, rows then columns
        rows = torch.from_numpy((hgrid[:, None] + rnd_h.flat[0] + np.arange(fsize_h)).reshape(-1))
        cols = torch.from_numpy((wgrid[:, None] + rnd_w.flat[0] + np.arange(fsize_w)).reshape(-1))
        return pixels[:, rows][:, :, cols][frames].permute(3, 0, 1, 2).contiguous()
    block_of_t = np.arange(t) // aligned
    # rows[t, i, j, a] and cols[t, i, j, b] of the source pixels
    rows = (hgrid[None, :, None] + rnd_h[:, :, block_of_t].transpose(2, 0, 1))[..., None] + np.arange(fsize_h)
    cols = (wgrid[None, None, :] + rnd_w[:, :, block_of_t].transpose(2, 0, 1))[..., None] + np.arange(fsize_w)
    t_idx = frames.view(t, 1, 1, 1, 1)
    r_idx = torch.from_numpy(rows).view(t, fragments_h, fragments_w, fsize_h, 1)
    c_idx = torch.from_numpy(cols).view(t, fragments_h, fragments_w, 1, fsize_w)
    out = pixels[t_idx, r_idx, c_idx]  # [T, fh, fw, fsize_h, fsize_w, C]
    return out.permute(5, 0, 1, 3, 2, 4).reshape(c, t, fragments_h * fsize_h, fragments_w * fsize_w)


def resized_view(video: torch.Tensor, size_h: int = 224, size_w: int = 224,
                 frame_index: Optional[np.ndarray] = None, **_: object) -> torch.Tensor:
    """Squash-resize uint8 [C,U,H,W] -> [C,T,size_h,size_w] (bilinear, antialiased, on uint8).

    Each distinct frame of the clip is resized once; the small result is then indexed."""
    frames = clip_frames(video, frame_index)
    used, inverse = torch.unique(frames, return_inverse=True)
    if len(used) < video.shape[1]:
        video = video[:, used]  # only the frames this clip uses
    out = video.transpose(0, 1)  # [T, C, H, W]
    if out.shape[-2:] != (size_h, size_w):  # torchvision's resize, without importing torchvision
        out = F.interpolate(out, size=[size_h, size_w], mode="bilinear", align_corners=False, antialias=True)
    out = out.transpose(0, 1)
    return out if torch.equal(inverse, torch.arange(out.shape[1])) else out[:, inverse]


def resize_crop_view(video: torch.Tensor, resize: Optional[int] = 520, crop: Optional[int] = 448,
                     train: bool = False, rng: Optional[np.random.Generator] = None,
                     frame_index: Optional[np.ndarray] = None, **_: object) -> torch.Tensor:
    """SimpleVQA: squash-resize to resize x resize, crop crop x crop (random in training as the
    seed, U{0..resize-crop-1}; centre at test). resize None: the clip's frames at their native
    size [C,T,H,W] (crop must be None too: a square crop of a native frame would depend on its shape)."""
    if resize is None:
        if crop is not None:
            raise ValueError(f"simpleVQA view: crop {crop} needs a resize (resize null keeps the native size)")
        return video[:, clip_frames(video, frame_index)]
    if crop is None or crop > resize:
        raise ValueError(f"simpleVQA view: crop {crop} must be at most resize {resize}")
    video = resized_view(video, resize, resize, frame_index)
    if train and resize > crop:
        top, left = (int(v) for v in rng.integers(0, resize - crop, size=2))
    else:
        top = left = resize // 2 - crop // 2
    return video[..., top:top + crop, left:left + crop]


VIEWS: dict[str, Callable[..., torch.Tensor]] = {
    "technical": spatial_fragments,
    "aesthetic": resized_view,
    "simpleVQA": resize_crop_view,
}


def view_function(view_name: str) -> Callable[..., torch.Tensor]:
    """The view for a sample_types name, chosen by its prefix (as the reference)."""
    for prefix, fn in VIEWS.items():
        if view_name.startswith(prefix):
            return fn
    raise KeyError(f"view '{view_name}': name must start with one of {', '.join(VIEWS)}")


def view_options(view_name: str) -> set[str]:
    """The sample_types options the view `view_name` reads: its function's keyword arguments."""
    params = inspect.signature(view_function(view_name)).parameters.values()
    return {p.name for p in params
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("video", "train", "rng", "frame_index")}


def apply_view(view_name: str, video: torch.Tensor, opts: Mapping, train: bool,
               rng: Optional[np.random.Generator], frame_index: Optional[np.ndarray] = None) -> torch.Tensor:
    """The view `view_name` of the clip video[:, frame_index] (see the module docstring)."""
    return view_function(view_name)(video, train=train, rng=rng, frame_index=frame_index, **opts)


def min_frame_size(view_name: str, opts: Mapping) -> tuple[int, int]:
    """The smallest (height, width) of a decoded frame the view `view_name` with options `opts`
    accepts (see the module docstring): (NATIVE_MIN_SIDE, NATIVE_MIN_SIDE) for the native-size
    simpleVQA view (resize null), (1, 1) for every view that rescales."""
    if view_function(view_name) is resize_crop_view and opts.get("resize", 520) is None:
        return NATIVE_MIN_SIDE, NATIVE_MIN_SIDE
    return 1, 1


def check_frame_size(path: str, height: int, width: int, views: Mapping[str, Mapping]) -> None:
    """Raise VideoTooSmallError if frames of height x width are smaller than a view of `views`
    (sample_types: view name -> options) needs, e.g. "16x16 is smaller than the 33x33 the view
    'simpleVQA' needs"; called by the dataset when the video is opened (a bad video: skipped with
    skip_bad_videos)."""
    for name, opts in views.items():
        min_h, min_w = min_frame_size(name, opts)
        if height < min_h or width < min_w:
            why = (" (resize: null feeds the frames at their native size to the backbone; set a resize to "
                   "score small videos)" if (min_h, min_w) != (1, 1) else "")
            raise VideoTooSmallError(f"{path}: frames of {width}x{height} (width x height) are smaller than the "
                                     f"{min_w}x{min_h} the view '{name}' needs{why}")


def assert_finite(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """`tensor` itself if every value is finite (integer tensors always are), else a
    NonFiniteViewError naming `what` (e.g. "video a.mp4, view 'simpleVQA'") and the count."""
    if tensor.is_floating_point() or tensor.is_complex():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise NonFiniteViewError(f"{what}: {int(bad.sum())} of {tensor.numel()} values are NaN or infinite")
    return tensor
