"""Extraction of SlowFast R50 features for SimpleVQA (used by SlowFast_features.py).

Per video: fps = round(average fps) (30 when the file does not say), n = max(1, frames // fps)
clips, clip i = 32 frames from frame i·fps (past the end: the last frame repeated), at least 8
clips (the last one repeated). Output, as the reference:
`<out_dir>/<video_name>/feature_<i>_{slow,fast}_feature.npy` with shapes (1,2048,1,1,1) and
(1,256,1,1,1), each written atomically, then a `.complete` marker (resume skips those videos).

Videos are decoded clip by clip in `num_workers` processes; clips of any videos are batched
through the network; nothing holds a whole decoded video.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from datasets.decoding import VideoDecodeError, VideoReader
from kvq.io import atomic_open
from models.slowfast import CLIP_FRAMES, SlowFastExtractor, preprocess_frames

log = logging.getLogger(__name__)

MIN_CLIPS = 8
DEFAULT_FPS = 30
MARKER = ".complete"


@dataclass(frozen=True)
class ClipPlan:
    """Which frames each distinct clip of a video uses; clips >= n_unique repeat the last one."""

    fps: int
    num_frames: int
    n_unique: int
    n_total: int

    def frames(self, i: int) -> np.ndarray:
        return np.minimum(i * self.fps + np.arange(CLIP_FRAMES), self.num_frames - 1)


def plan_clips(num_frames: int, fps: float) -> ClipPlan:
    rounded = int(round(fps))
    if rounded <= 0:
        log.warning("unknown frame rate; assuming %d fps", DEFAULT_FPS)
        rounded = DEFAULT_FPS
    n = max(1, num_frames // rounded)
    return ClipPlan(rounded, num_frames, n, max(n, MIN_CLIPS))


def build_extractor(pretrained: bool = True, weights: Optional[str | os.PathLike] = None,
                    seed: int = 0) -> SlowFastExtractor:
    """The SlowFast R50 extractor: Kinetics-400 weights, or (pretrained=False) a random network
    initialised from `seed`, so that every run (a resumed one, or scoring new videos later) makes
    features of the same random network. The global RNG state is left untouched."""
    if pretrained:
        return SlowFastExtractor(pretrained=True, pretrained_path=weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SlowFastExtractor(pretrained=False)


def feature_name(path: str | os.PathLike) -> str:
    """Feature folder name (relative) for a video given by file path: its absolute path without
    the root, e.g. /data/clips/a.mp4 -> data/clips/a.mp4 (unique per file, never escapes the root)."""
    return Path(os.path.abspath(path)).as_posix().lstrip("/")


def is_complete(out_dir: Path, video_name: str) -> bool:
    """Done by this tool (marker) or by the reference (the 8 first clips' files all present)."""
    folder = out_dir / video_name
    if (folder / MARKER).is_file():
        return True
    return all((folder / f"feature_{i}_{p}_feature.npy").is_file() for i in range(MIN_CLIPS) for p in ("slow", "fast"))


class ClipStream(IterableDataset):
    """Yields {"video", "clip", "plan", "x": float [3,32,S,S]} per distinct clip, or
    {"video", "error"} for a video that cannot be decoded. Videos are split across workers."""

    def __init__(self, paths: Sequence[tuple[str, str]], size: int = 224, decoder: str = "decord") -> None:
        self.paths = list(paths)
        self.size = size
        self.decoder = decoder

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        mine = self.paths if info is None else self.paths[info.id::info.num_workers]
        for name, path in mine:
            try:
                reader = VideoReader(path, self.decoder)
                plan = plan_clips(reader.num_frames, reader.fps())
                for i in range(plan.n_unique):
                    frames = reader.read(plan.frames(i))
                    yield {"video": name, "clip": i, "plan": plan, "x": preprocess_frames(frames, self.size)}
            except VideoDecodeError as e:
                yield {"video": name, "error": str(e)}


def single_thread(worker_id: int) -> None:
    """Decoding workers use one torch thread each: the network in the main process needs the cores."""
    torch.set_num_threads(1)


def save_video_features(out_dir: Path, name: str, plan: ClipPlan, slow: dict[int, np.ndarray],
                        fast: dict[int, np.ndarray]) -> None:
    """Write clips 0..n_total-1 of one video (clip i >= n_unique repeats the last distinct one),
    each file atomically, then the `.complete` marker."""
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    # last clip first: a run killed part-way never leaves clips 0-7 beside missing later ones,
    # so `is_complete`'s reference-layout rule cannot mistake a partial folder for a finished one
    for i in reversed(range(plan.n_total)):
        src = min(i, plan.n_unique - 1)
        for pathway, values in (("slow", slow), ("fast", fast)):
            with atomic_open(folder / f"feature_{i}_{pathway}_feature.npy", "wb") as f:
                np.save(f, values[src])
    (folder / MARKER).write_text(f"{plan.n_total} clips, fps {plan.fps}, {plan.num_frames} frames\n")


def extract_features(videos: Sequence[tuple[str, str]], out_dir: str | Path, model: SlowFastExtractor,
                     device: torch.device, size: int = 224, batch_clips: int = 4, num_workers: int = 0,
                     decoder: str = "decord", progress: bool = True) -> dict[str, str]:
    """Extract features of (video_name, path) pairs not done yet; returns {video: error}."""
    out_dir = Path(out_dir)
    todo = [(n, p) for n, p in videos if not is_complete(out_dir, n)]
    if len(todo) < len(videos):
        log.info("%d of %d videos already have features; skipping them", len(videos) - len(todo), len(videos))
    errors: dict[str, str] = {}
    if not todo:
        return errors
    model.eval().to(device)
    loader = DataLoader(ClipStream(todo, size, decoder), batch_size=None, num_workers=num_workers,
                        worker_init_fn=single_thread)
    pending: dict[str, tuple[ClipPlan, dict, dict]] = {}
    batch: list[dict] = []
    bar = tqdm(total=len(todo), desc="SlowFast features", unit="video", disable=not progress, dynamic_ncols=True)

    def run_batch() -> None:
        with torch.no_grad():
            slow, fast = model(torch.stack([b["x"] for b in batch]).to(device))
        for b, s, f in zip(batch, slow.cpu().numpy(), fast.cpu().numpy()):
            plan, slows, fasts = pending.setdefault(b["video"], (b["plan"], {}, {}))
            slows[b["clip"]], fasts[b["clip"]] = s[None], f[None]
            if len(slows) == plan.n_unique:
                save_video_features(out_dir, b["video"], plan, slows, fasts)
                del pending[b["video"]]
                bar.update(1)
        batch.clear()

    for item in loader:
        if "error" in item:
            errors[item["video"]] = item["error"]
            bar.update(1)
            continue
        batch.append(item)
        if len(batch) == batch_clips:
            run_batch()
    if batch:
        run_batch()
    bar.close()
    for name, error in errors.items():
        log.error("no features for %s: %s", name, error)
    return errors

