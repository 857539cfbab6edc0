"""Datasets registered under the reference's config names.

Each sample is produced by a small pipeline: read annotation record -> sample frame indices
(per view) -> decode the union of frames once -> build each view. Views stay uint8 (a quarter
of float32's bytes to collate, pin and copy); `sample["normalization"]` names each view's
normalisation (datasets.normalize.NORMALIZATIONS), applied on the device by
kvq.eval.predict.clip_inputs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.annotations import VideoRecord, read_annotations
from datasets.decoding import read_frames
from datasets.features import clip_feature_paths, load_clip_features
from datasets.normalize import SIMPLEVQA
from datasets.samplers import SAMPLER_OPTIONS, build_sampler
from datasets.views import apply_view, check_frame_size, resized_view, view_options
from datasets.registry import DATASETS


class VideoQualityDataset(Dataset):
    """Base class: annotations, samplers and decoding shared by the concrete datasets.

    `opt` is `data.<split>.args` of a validated config. `phase == 'train'` gives random
    sampling and crops; any other phase is deterministic (same video -> same input).
    """

    def __init__(self, opt: Mapping[str, Any], records: Optional[list[VideoRecord]] = None) -> None:
        super().__init__()
        self.opt = opt
        self.phase = opt.get("phase", "test")
        self.train = self.phase == "train"
        self.sample_types: dict[str, dict] = {k: dict(v) for k, v in opt["sample_types"].items()}
        if not self.sample_types:
            raise ValueError("dataset needs at least one view in sample_types")
        self.samplers = {k: build_sampler(v) for k, v in self.sample_types.items()}
        self.decoder = opt.get("decoder", "decord")
        self.records = records if records is not None else read_annotations(
            opt["anno_file"], opt.get("data_prefix", ""), opt.get("anno_format", "auto"),
            allow_repeats=opt.get("allow_repeats", False))

    @classmethod
    def view_options(cls, view_name: str) -> set[str]:
        """The options of `sample_types.<view_name>` this dataset reads (kvq.config refuses others)."""
        return view_options(view_name) | set(SAMPLER_OPTIONS)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_labels(self) -> bool:
        return all(r.label is not None for r in self.records)

    def _rng(self) -> Optional[np.random.Generator]:
        """Per-sample generator drawn from torch's RNG (seeded per worker by the DataLoader)."""
        if not self.train:
            return None
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def decode_views(self, record: VideoRecord, rng: Optional[np.random.Generator]
                     ) -> tuple[torch.Tensor, dict[str, np.ndarray], dict[str, np.ndarray], tuple[int, int, int]]:
        """Decode each distinct needed frame once. Returns (uint8 video [3,U,H,W] of the distinct
        frames, per view the index [T] of its clip's frames in that video, per view the frame
        numbers [T], the original (T, H, W))."""
        per_view: dict[str, np.ndarray] = {}

        def indices_fn(num_frames: int) -> np.ndarray:
            for name, sampler in self.samplers.items():
                per_view[name] = sampler(num_frames, self.train, rng)
            return np.concatenate(list(per_view.values()))

        frames, inverse, num_frames = read_frames(record.path, indices_fn, self.decoder,
                                                  self.opt.get("allow_truncated", False))
        check_frame_size(record.path, frames.shape[1], frames.shape[2], self.sample_types)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)  # [3, U, H, W] uint8 (a view, no copy)
        index, start = {}, 0
        for name, inds in per_view.items():
            index[name] = inverse[start:start + len(inds)]
            start += len(inds)
        return video, index, per_view, (num_frames, frames.shape[1], frames.shape[2])

    def common_fields(self, record: VideoRecord, frame_inds: dict[str, np.ndarray]) -> dict[str, Any]:
        return {
            "num_clips": {k: v["num_clips"] for k, v in self.sample_types.items()},
            "clip_len": {k: v["clip_len"] for k, v in self.sample_types.items()},
            "frame_inds": {k: torch.from_numpy(v) for k, v in frame_inds.items()},
            "label": float("nan") if record.label is None else float(record.label),
            "video_name": record.video_name,
            "name": record.path,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.make_sample(self.records[index])

    def make_sample(self, record: VideoRecord) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def feature_files(opt: Mapping[str, Any], record: VideoRecord) -> list[Path]:
        """Cached feature files a sample of `record` reads (none here)."""
        return []


@DATASETS.register("ViewDecompositionDataset_KVQ")
class KSVQEDataset(VideoQualityDataset):
    """KSVQE input: for the (single) technical view with T = clip_len * num_clips frames:

    technical:    uint8 [3,T,288,288] (fragments, Swin normalisation; KSVQE's `fragment`)
    resize_video: uint8 [3,T,size_h,size_w] (the raw clip resized, CLIP normalisation)
    normalization: {view: name}, dis_label: int, label: float, original_shape: (T,H,W), + common fields.
    """

    @classmethod
    def view_options(cls, view_name: str) -> set[str]:
        """A technical view also reads size_h/size_w: the size of its CLIP view (resize_video)."""
        extra = {"size_h", "size_w"} if view_name.startswith("technical") else set()
        return super().view_options(view_name) | extra

    def make_sample(self, record: VideoRecord) -> dict[str, Any]:
        rng = self._rng()
        video, index, frame_inds, shape = self.decode_views(record, rng)
        sample: dict[str, Any] = {}
        normalization = {}
        for name, opts in self.sample_types.items():
            sample[name] = apply_view(name, video, opts, self.train, rng, index[name])
            normalization[name] = "technical"
            if name.startswith("technical"):
                sample["resize_video"] = resized_view(video, opts["size_h"], opts["size_w"], index[name])
                normalization["resize_video"] = "clip"
        sample["normalization"] = normalization
        sample.update(self.common_fields(record, frame_inds))
        sample["dis_label"] = record.dis_label
        sample["original_shape"] = torch.tensor(shape)
        return sample


@DATASETS.register("ViewDecompositionDataset_add_forSimpleVQA")
class SimpleVQADataset(VideoQualityDataset):
    """SimpleVQA input: simpleVQA uint8 [3,T,crop,crop] (ImageNet normalisation, or the reference's
    0-255 variant, or 'inception': `normalization`), feat float [T, 2304] cached SlowFast features
    of clips 0..T-1 (none when data_prefix_3D is null), normalization: {view: name}."""

    def __init__(self, opt: Mapping[str, Any], records: Optional[list[VideoRecord]] = None) -> None:
        super().__init__(opt, records)
        self.normalization = opt.get("normalization", "imagenet")
        if self.normalization not in SIMPLEVQA:
            raise ValueError(f"normalization must be one of {', '.join(SIMPLEVQA)}, got {self.normalization!r}")
        self.feature_root = opt.get("data_prefix_3D")
        self.feature_type = opt.get("feature_type", "SlowFast")

    @staticmethod
    def feature_files(opt: Mapping[str, Any], record: VideoRecord) -> list[Path]:
        """The SlowFast feature files of `record` that `make_sample` reads."""
        views = opt["sample_types"]
        if "simpleVQA" not in views or not opt.get("data_prefix_3D"):
            return []
        return clip_feature_paths(opt["data_prefix_3D"], record.feature_name or record.video_name,
                                  opt.get("feature_type", "SlowFast"), views["simpleVQA"]["clip_len"])

    def make_sample(self, record: VideoRecord) -> dict[str, Any]:
        rng = self._rng()
        sample: dict[str, Any] = {}
        # decoded first: an undecodable video (which has no features either) is named as such
        video, index, frame_inds, _ = self.decode_views(record, rng)
        if "simpleVQA" in self.sample_types and self.feature_root:
            n = self.sample_types["simpleVQA"]["clip_len"]
            sample["feat"] = load_clip_features(self.feature_root, record.feature_name or record.video_name,
                                                self.feature_type, n)
        for name, opts in self.sample_types.items():
            sample[name] = apply_view(name, video, opts, self.train, rng, index[name])
        sample["normalization"] = {name: self.normalization if name.startswith("simpleVQA") else "technical"
                                   for name in self.sample_types}
        sample.update(self.common_fields(record, frame_inds))
        return sample


def frame_size_key(view: str) -> str:
    """The batch key of the frame sizes of `view`'s clips (set by `collate` when they differ)."""
    return f"{view}_frame_size"


def pad_to_common_size(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`samples` whose clips [C, T, H, W] of one view differ in frame size only (the native-size
    simpleVQA view, resize null) padded with zeros at the bottom and right to the largest height and
    width, each with `frame_size_key(view)`: int64 [2], its clip's (H, W). The padding only lets the
    clips travel as one tensor: the backbone crops it off before it computes anything
    (docs/data.md "Videos of different sizes in one batch"). Other samples are returned as they are."""
    out = samples
    for key, value in samples[0].items():
        if not (torch.is_tensor(value) and value.ndim == 4):
            continue
        shapes = [s[key].shape for s in samples]
        if len({shape[-2:] for shape in shapes}) == 1 or len({shape[:-2] for shape in shapes}) > 1:
            continue  # one size (default_collate stacks it), or clips that differ in more than size
        height, width = max(shape[-2] for shape in shapes), max(shape[-1] for shape in shapes)
        out = [dict(s) for s in out]
        for s, shape in zip(out, shapes):
            padded = s[key].new_zeros((*shape[:-2], height, width))
            padded[..., :shape[-2], :shape[-1]] = s[key]
            s[key], s[frame_size_key(key)] = padded, torch.tensor(shape[-2:])
    return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate that drops samples marked bad (datasets.skipping.SkipUnreadable) and lists
    them under 'bad_videos' as (video_name, error) pairs; clips of one view that differ in frame
    size are padded to one size, their sizes under `frame_size_key(view)` [B, 2] (`pad_to_common_size`)."""
    bad = [(s["bad_video"], s["error"]) for s in samples if "bad_video" in s]
    good = [s for s in samples if "bad_video" not in s]
    batch: dict[str, Any] = torch.utils.data.default_collate(pad_to_common_size(good)) if good else {}
    batch["bad_videos"] = bad
    return batch


def build_dataset(spec: Mapping[str, Any]) -> VideoQualityDataset:
    """Dataset from a validated `data.<split>` spec ({type, args})."""
    return DATASETS.get(spec["type"])(spec["args"])

