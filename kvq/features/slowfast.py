"""Extraction of SlowFast R50 features for SimpleVQA (used by SlowFast_features.py).

Per video: fps = round(average fps) (30 when the file does not say), n = max(1, frames // fps)
clips, clip i = 32 frames from frame i·fps (past the end: the last frame repeated), at least 8
clips (the last one repeated). Output, as the reference:
`<out_dir>/<video_name>/feature_<i>_{slow,fast}_feature.npy` with shapes (1,2048,1,1,1) and
(1,256,1,1,1), each written atomically, then a `.complete` marker: one JSON line with the clip plan
and the video file's identity when its features were made (`video_stamp`: its size and a digest of
its first and last MiB). A video whose file has another identity now (re-encoded, or replaced at the
same path, even by a file of the same size and modification time) has stale features: its folder is
emptied and extracted again, never mixed. Folders without that
record (made by the reference code: clip files, no marker) cannot be checked: the
`--videos`/API cache extracts them again; `SlowFast_features.py` keeps them (`keep_unrecorded`)
with a warning, so resuming over reference features does not redo hours of work.

Videos are decoded in `num_workers` processes, each in one sequential pass (`iter_frames`) in which
every frame is decoded and resized once, also where clips overlap; a clip is handed on as soon as
its last frame is decoded and frames no later clip needs are dropped, so memory stays flat with the
video's length. When that pass fails, the remaining clips are read clip by clip with the video
reader (decord, PyAV as its fallback). Clips of any videos are batched through the network.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from datasets.decoding import VideoDecodeError, VideoReader, iter_frames
from datasets.features import clip_feature_paths, feature_path
from kvq.core.device import autocast, check_amp, to_channels_last
from kvq.core.io import atomic_open, atomic_write_text, content_digest
from models.slowfast import CLIP_FRAMES, SlowFastExtractor, preprocess_frames

log = logging.getLogger(__name__)

MIN_CLIPS = 8
DEFAULT_FPS = 30
MARKER = ".complete"
PREPROCESS_FRAMES = 8  # decoded frames resized and normalised together (a float copy of them is made)


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
    """The SlowFast R50 extractor, in eval mode and fused for inference (`fuse_for_inference`:
    BatchNorms folded into the convolutions): Kinetics-400 weights, or (pretrained=False) a random
    network initialised from `seed`, so that every run (a resumed one, or scoring new videos later)
    makes features of the same random network. The global RNG state is left untouched."""
    if pretrained:
        model = SlowFastExtractor(pretrained=True, pretrained_path=weights)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SlowFastExtractor(pretrained=False)
    return model.eval().fuse_for_inference()


def feature_name(path: str | os.PathLike) -> str:
    """Feature folder name (relative) for a video given by file path: its absolute path without
    the root, e.g. /data/clips/a.mp4 -> data/clips/a.mp4 (unique per file, never escapes the root)."""
    return Path(os.path.abspath(path)).as_posix().lstrip("/")


def video_stamp(path: str | os.PathLike) -> Optional[dict[str, int | str]]:
    """The identity a marker records: {"size": bytes, "sha256": `kvq.core.io.content_digest`} (the
    content, not the modification time: a file copied over another with `cp -p` or `rsync -t` keeps
    size and mtime, not content); None when the file cannot be read (its decoding then fails and
    names it)."""
    try:
        size, digest = content_digest(path)
    except OSError:
        return None
    return {"size": size, "sha256": digest}


COMPLETE, CHANGED, UNRECORDED, ABSENT = "complete", "changed", "unrecorded", "absent"


def feature_status(out_dir: Path, video_name: str, path: str | os.PathLike) -> str:
    """COMPLETE: the marker records this very file (same `video_stamp`); CHANGED: it records
    another file; UNRECORDED: finished but without a record (a marker without the file's
    identity, or the reference's layout: the 8 first clips' files all present, no marker);
    ABSENT: not done."""
    folder = Path(out_dir) / video_name
    try:
        recorded = json.loads((folder / MARKER).read_text()).get("video")
    except FileNotFoundError:
        done = all(path.is_file() for path in clip_feature_paths(out_dir, video_name, num_clips=MIN_CLIPS))
        return UNRECORDED if done else ABSENT
    if not recorded:
        return UNRECORDED
    return COMPLETE if recorded == video_stamp(path) else CHANGED


def is_complete(out_dir: Path, video_name: str, path: str | os.PathLike, keep_unrecorded: bool = False) -> bool:
    """Features of `path` are done (see `feature_status`; UNRECORDED counts with keep_unrecorded)."""
    status = feature_status(out_dir, video_name, path)
    return status == COMPLETE or (keep_unrecorded and status == UNRECORDED)


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
                done = 0
                for done, x in enumerate(self.sequential_clips(path, plan), 1):
                    yield {"video": name, "clip": done - 1, "plan": plan, "x": x}
                for i in range(done, plan.n_unique):
                    yield {"video": name, "clip": i, "plan": plan, "x": self.seeking_clip(reader, plan, i)}
            except VideoDecodeError as e:
                yield {"video": name, "error": str(e)}

    def seeking_clip(self, reader: VideoReader, plan: ClipPlan, i: int) -> torch.Tensor:
        """Clip i read on its own: float [3, 32, S, S]."""
        return preprocess_frames(reader.read(plan.frames(i)), self.size)

    def sequential_clips(self, path: str, plan: ClipPlan) -> Iterator[torch.Tensor]:
        """Clips 0, 1, ... float [3, 32, S, S] from one decoding pass, each frame resized once
        (the same values as `seeking_clip`), `PREPROCESS_FRAMES` at a time (one frame at a time,
        starting each small tensor operation on the threads costs more than its work). Stops early
        (the caller reads the rest) when the pass fails or ends before the frames the reader counted."""
        needed = {int(k) for i in range(plan.n_unique) for k in plan.frames(i)}
        kept: dict[int, torch.Tensor] = {}  # frame number -> [3, 1, S, S]
        decoded: list[tuple[int, np.ndarray]] = []  # needed frames not preprocessed yet

        def preprocess_decoded() -> None:
            if decoded:
                x = preprocess_frames(np.stack([frame for _, frame in decoded]), self.size)
                kept.update((k, x[:, j:j + 1]) for j, (k, _) in enumerate(decoded))
                decoded.clear()

        clip = 0
        try:
            for k, frame in enumerate(iter_frames(path)):
                if k in needed:
                    decoded.append((k, frame))
                    if len(decoded) == PREPROCESS_FRAMES:
                        preprocess_decoded()
                while clip < plan.n_unique and int(plan.frames(clip)[-1]) <= k:
                    preprocess_decoded()
                    yield torch.cat([kept[int(f)] for f in plan.frames(clip)], dim=1)
                    clip += 1
                    first = int(plan.frames(clip)[0]) if clip < plan.n_unique else plan.num_frames
                    for f in [f for f in kept if f < first]:
                        del kept[f]
                if clip == plan.n_unique:
                    return
        except VideoDecodeError as e:
            log.warning("%s; reading its clips %d-%d one by one", e, clip, plan.n_unique - 1)
            return
        log.warning("%s: the decoding pass ended before frame %d; reading its clips %d-%d one by one",
                    path, plan.num_frames - 1, clip, plan.n_unique - 1)


def single_thread(worker_id: int) -> None:
    """Decoding workers use one torch thread each: the network in the main process needs the cores."""
    torch.set_num_threads(1)


def save_video_features(out_dir: Path, name: str, plan: ClipPlan, slow: dict[int, np.ndarray],
                        fast: dict[int, np.ndarray], stamp: Optional[dict[str, int]] = None) -> None:
    """Replace the folder's features by clips 0..n_total-1 of one video (clip i >= n_unique
    repeats the last distinct one), each file atomically, then the `.complete` marker recording
    the plan and `stamp` (`video_stamp` of the file, taken before decoding)."""
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    # stale files go first, the marker then clip 0 first: a run killed part-way leaves neither a
    # marker nor clips 0-7 of two videos side by side
    (folder / MARKER).unlink(missing_ok=True)
    for old in sorted(folder.glob("feature_*_feature.npy"), key=lambda f: int(f.name.split("_")[1])):
        old.unlink()
    # last clip first: a run killed part-way never leaves clips 0-7 beside missing later ones,
    # so `feature_status`'s reference-layout rule cannot mistake a partial folder for a finished one
    for i in reversed(range(plan.n_total)):
        src = min(i, plan.n_unique - 1)
        for pathway, values in (("slow", slow), ("fast", fast)):
            with atomic_open(feature_path(out_dir, name, i, pathway), "wb") as f:
                np.save(f, values[src])
    atomic_write_text(folder / MARKER, json.dumps({"clips": plan.n_total, "fps": plan.fps,
                                                   "frames": plan.num_frames, "video": stamp}) + "\n")


def extract_features(videos: Sequence[tuple[str, str]], out_dir: str | Path, model: SlowFastExtractor,
                     device: torch.device, size: int = 224, batch_clips: int = 2, num_workers: int = 0,
                     decoder: str = "decord", progress: bool = True, keep_unrecorded: bool = False,
                     amp: str = "off") -> dict[str, str]:
    """Extract features of (video_name, path) pairs not done yet (`feature_status`; folders
    without a record of their video kept with keep_unrecorded, else extracted again); returns
    {video: error}. The network's convolutions run channels-last 3-D (oneDNN's faster layout;
    `model`'s weights are converted in place). amp "bf16": under bf16 autocast (faster on CPUs
    with AVX512-BF16/AMX and on GPUs; features differ from fp32 ones, see docs/benchmarks.md),
    "off": fp32, the reference's values."""
    out_dir = Path(out_dir)
    status = {n: feature_status(out_dir, n, p) for n, p in videos}
    kept = [n for n, s in status.items() if s == UNRECORDED] if keep_unrecorded else []
    if kept:
        log.warning("%d feature folders do not record which video file they were made from (made by the reference "
                    "code), kept as they are: %s%s; delete them to extract them again",
                    len(kept), ", ".join(kept[:5]), " ..." if len(kept) > 5 else "")
    todo = [(n, p) for n, p in videos if status[n] != COMPLETE and n not in kept]
    if len(todo) < len(videos):
        log.info("%d of %d videos already have features; skipping them", len(videos) - len(todo), len(videos))
    stale = [n for n, _ in todo if status[n] in (CHANGED, UNRECORDED)]
    if stale:
        log.info("%d videos have features of another file (replaced since, or unrecorded): extracting them again: "
                 "%s%s", len(stale), ", ".join(stale[:5]), " ..." if len(stale) > 5 else "")
    errors: dict[str, str] = {}
    if not todo:
        return errors
    stamps = {n: video_stamp(p) for n, p in todo}
    model.eval().to(device)
    check_amp(device, amp)
    to_channels_last(model)
    loader = DataLoader(ClipStream(todo, size, decoder), batch_size=None, num_workers=num_workers,
                        worker_init_fn=single_thread)
    pending: dict[str, tuple[ClipPlan, dict, dict]] = {}
    batch: list[dict] = []
    bar = tqdm(total=len(todo), desc="SlowFast features", unit="video", disable=not progress, dynamic_ncols=True)

    def run_batch() -> None:
        with torch.no_grad(), autocast(device, amp):
            # the clips leave `batch`: only their stacked copy is alive during the forward pass
            slow, fast = model(torch.stack([b.pop("x") for b in batch]).to(device))
        for b, s, f in zip(batch, slow.float().cpu().numpy(), fast.float().cpu().numpy()):
            plan, slows, fasts = pending.setdefault(b["video"], (b["plan"], {}, {}))
            slows[b["clip"]], fasts[b["clip"]] = s[None], f[None]
            if len(slows) == plan.n_unique:
                save_video_features(out_dir, b["video"], plan, slows, fasts, stamps[b["video"]])
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

