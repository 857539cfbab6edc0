"""Built-in demo dataset: a small KVQ-shaped dataset made only from content that ships in packages.

Content: scikit-image's bundled photographs (panned and zoomed into a clip) and ffmpeg lavfi
generators (testsrc2, mandelbrot, life, cellauto, sierpinski, gradients, perlin); nothing is
downloaded. ffmpeg is the binary bundled with imageio-ffmpeg (libx264, libvmaf).

Layout under the dataset root (annotation file names are relative to the root):
    train/0001.mp4 ... val/0001.mp4 ... test/0001.mp4
        H.264, yuv420p, `fps` frames per second; portrait `width`x`height` or landscape (swapped).
        Each source group is 7 consecutive files, as in KVQ: the source, then its 6 processed
        versions (dis_label 1..6 in `PROCESSINGS` order). Groups never span two splits.
    train.csv, val.csv, test.csv            header `filename,score`
    train_ksvqe.txt, val_ksvqe.txt, test_ksvqe.txt
                                            no header: `filename,cls_label,dis_label,score`
                                            (cls_label = source index, dis_label = processing 0..6)
    truth.csv                               the val labels (challenge scorer's ground truth)
    rank-pair-val.xlsx                      sheets `source` (pairs inside one val group) and
                                            `nonsource` (pairs across val groups); columns
                                            video1, video2, rank (1 = video1 better, 2 = video2)
    test_unlabeled.csv                      header `filename` (challenge-test style)
    dataset.json                            parameters, label mapping, one record per video;
                                            written last: its presence marks a complete build

Layout `kvq` (`build_dataset(..., layout="kvq")`): the same videos under the official KVQ release's
names, the ones the README tells KVQ users to create (a rehearsal of the real road, see
tests/test_rehearsal.py): train_data.csv and val_data.csv (header `filename,score`),
test_data.csv (header `filename`: unlabeled, as released), rank-pair-val.xlsx (standing in for the
challenge's val pair sheet; truth.csv is made from val_data.csv by the README's commands) and
dataset.json; no KSVQE lists (scripts/convert_annotations.py makes them).

Labels: VMAF of each processed version against its source, mapped to MOS (kvq/demo/plan.py).

Determinism: every random choice comes from numpy generators seeded by `seed`; ffmpeg runs
single-threaded (x264 `-threads 1`, libvmaf `n_threads=1`) with bitexact muxing, so the same
seed and ffmpeg build give byte-identical videos and identical labels.

Resuming: videos are written under temporary names (`.NNNN.part.mp4`) and renamed; each finished
source group is recorded in `.build/`; an interrupted build with the same parameters resumes from
the finished groups. `.build/` is removed once dataset.json is written.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from kvq.core.errors import UserError
from kvq.core.io import atomic_write_text
from kvq.demo.annotations import LAYOUTS, video_records, write_annotations
from kvq.demo.ffmpeg import VMAF_MODEL, ffmpeg_exe, ffmpeg_version, measure_vmaf
from kvq.demo.plan import MOS_MAPPING, PROCESSINGS, SPLITS, DemoParams, SourcePlan, plan_dataset
from kvq.demo.processing import process_version
from kvq.demo.sources import render_source

log = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
BUILD_DIR = ".build"


class DemoDatasetError(UserError, RuntimeError):
    """The demo dataset cannot be built here (the folder holds a different dataset or other files)."""


@dataclass
class BuildSummary:
    """What `build_dataset` did."""

    root: Path
    params: DemoParams
    noop: bool
    resumed_groups: int
    seconds: float
    videos: list[dict]

    def split_counts(self) -> dict[str, tuple[int, int]]:
        """split -> (source groups, videos)."""
        return {s: (len({v["cls_label"] for v in self.videos if v["split"] == s}),
                    sum(v["split"] == s for v in self.videos)) for s in SPLITS}


def _group_record_path(root: Path, plan: SourcePlan) -> Path:
    return root / BUILD_DIR / f"group_{plan.index:04d}.json"


def _load_group_record(root: Path, plan: SourcePlan) -> Optional[dict]:
    """The finished group's record, or None when the group must be (re)built."""
    path = _group_record_path(root, plan)
    if not path.is_file():
        return None
    with open(path) as f:
        record = json.load(f)
    names = [v.filename for v in plan.videos]
    if record.get("files") != names or not all((root / n).is_file() for n in names):
        return None
    return record


def _build_group(exe: str, root: Path, plan: SourcePlan, params: DemoParams) -> dict:
    """Render the source, its 6 versions and their VMAF; record the group as finished."""
    src = render_source(exe, plan, params, root / plan.videos[0].filename)
    vmaf = {}
    for v in plan.videos[1:]:
        version = process_version(exe, v, plan, params, src, root / v.filename)
        vmaf[v.filename] = measure_vmaf(exe, version, src, params.n_frames)
    record = {"index": plan.index, "files": [v.filename for v in plan.videos], "vmaf": vmaf}
    atomic_write_text(_group_record_path(root, plan), json.dumps(record, indent=1))
    log.debug("group %d (%s) done: %s", plan.index, plan.content, vmaf)
    return record


def _params_diff(recorded: dict, wanted: dict) -> str:
    keys = sorted(set(recorded) | set(wanted))
    return ", ".join(f"{k}: {recorded.get(k)!r} there vs {wanted.get(k)!r} asked" for k in keys
                     if recorded.get(k) != wanted.get(k))


def _existing_state(root: Path, params: DemoParams, layout: str = "demo") -> str:
    """'new', 'resume' or 'complete'; raises DemoDatasetError when `root` must not be touched."""
    if not root.exists():
        return "new"
    if not root.is_dir():
        raise DemoDatasetError(f"{root} exists and is not a folder")
    wanted = params.as_dict()
    meta = root / DATASET_JSON
    marker = root / BUILD_DIR / "params.json"
    if meta.is_file():
        with open(meta) as f:
            info = json.load(f)
        if info.get("params") != wanted:
            raise DemoDatasetError(f"{root} already holds a demo dataset built with different parameters "
                                   f"({_params_diff(info.get('params') or {}, wanted)}); refusing to overwrite it. "
                                   "Choose another --out, or delete that folder first.")
        if info.get("annotation_layout", "demo") != layout:
            raise DemoDatasetError(f"{root} already holds a demo dataset in the "
                                   f"'{info.get('annotation_layout', 'demo')}' layout, not '{layout}'; "
                                   "refusing to overwrite it. Choose another --out, or delete that folder first.")
        missing = [n for n in info.get("files", []) if not (root / n).is_file()]
        if missing:
            raise DemoDatasetError(f"{root}/{DATASET_JSON} marks the dataset complete but {len(missing)} listed "
                                   f"files are missing (e.g. {missing[0]}); delete the folder and rebuild")
        return "complete"
    if marker.is_file():
        with open(marker) as f:
            recorded = json.load(f)
        if recorded != wanted:
            raise DemoDatasetError(f"{root} holds an interrupted demo-dataset build with different parameters "
                                   f"({_params_diff(recorded, wanted)}); refusing to mix them. Resume it with "
                                   "those parameters, choose another --out, or delete that folder first.")
        return "resume"
    if any(root.iterdir()):
        raise DemoDatasetError(f"{root} is not empty and holds no demo dataset ({DATASET_JSON} absent); "
                               "refusing to write into it. Choose an empty or new folder.")
    return "new"


def _summary_from_json(root: Path, params: DemoParams, seconds: float) -> BuildSummary:
    with open(root / DATASET_JSON) as f:
        info = json.load(f)
    return BuildSummary(root, params, True, 0, seconds, info["videos"])


def build_dataset(out: str | os.PathLike, params: DemoParams = DemoParams(), workers: Optional[int] = None,
                  progress: bool = False, layout: str = "demo") -> BuildSummary:
    """Build (or resume, or confirm) the demo dataset at `out`; see the module docstring.

    workers: source groups built in parallel (default min(2, cpu count)); every ffmpeg call is
    single-threaded. layout: `demo` or `kvq` (the annotation files' names, see LAYOUTS). Raises
    DemoDatasetError if `out` holds something else, FFmpegError if ffmpeg lacks libx264 or libvmaf or
    one of its commands fails.
    """
    start = time.monotonic()
    params.validate()
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
    root = Path(out)
    state = _existing_state(root, params, layout)
    if state == "complete":
        log.info("%s already holds the complete demo dataset for these parameters; nothing to do", root)
        return _summary_from_json(root, params, time.monotonic() - start)
    exe = ffmpeg_exe()
    (root / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    if state == "new":
        atomic_write_text(root / BUILD_DIR / "params.json", json.dumps(params.as_dict(), indent=1))
    for part in root.glob("*/.*.part.mp4"):
        part.unlink()
    plans = plan_dataset(params)
    records = {p.index: r for p in plans if (r := _load_group_record(root, p)) is not None}
    todo = [p for p in plans if p.index not in records]
    if records:
        log.info("resuming the build in %s: %d of %d source groups already done", root, len(records), len(plans))
    log.info("building %d source groups (%d videos) in %s", len(todo), len(todo) * len(PROCESSINGS), root)
    workers = workers or min(2, os.cpu_count() or 1)
    with tqdm(total=len(plans), initial=len(records), unit="group", desc="demo dataset",
              disable=not progress) as bar, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_build_group, exe, root, p, params) for p in todo]
        try:
            for fut in as_completed(futures):
                record = fut.result()
                records[record["index"]] = record
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    videos = video_records(plans, records)
    write_annotations(root, videos, params.seed, layout)
    info = {"generator": "kvq.demo", "params": params.as_dict(), "annotation_layout": layout,
            "ffmpeg": ffmpeg_version(exe),
            "vmaf_model": VMAF_MODEL, "mos_mapping": MOS_MAPPING,
            "layout": "<split>/<NNNN>.mp4, 7 consecutive files per source group (source, then "
                      + ", ".join(PROCESSINGS[1:]) + "); annotation file names relative to this folder",
            "processings": list(PROCESSINGS), "splits": {s: sum(r["split"] == s for r in videos) for s in SPLITS},
            "files": [r["filename"] for r in videos] + list(LAYOUTS[layout]), "videos": videos}
    atomic_write_text(root / DATASET_JSON, json.dumps(info, indent=1))
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    seconds = time.monotonic() - start
    log.info("demo dataset complete in %s (%.1f s)", root, seconds)
    return BuildSummary(root, params, False, len(plans) - len(todo), seconds, videos)
