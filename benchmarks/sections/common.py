"""What every benchmark section shares: the plan (full or --quick), the run's context, generated
clips, timing and peak-memory measurement, configs and datasets, tables."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from datasets.annotations import VideoRecord
from datasets.decoding import VideoReader
from datasets.registry import DATASETS
from kvq.config import Config, load_config
from kvq.demo.ffmpeg import make_clip

ROOT = Path(__file__).resolve().parents[2]
FPS = 30
SOURCES = ("testsrc2", "smptehdbars", "rgbtestsrc", "mandelbrot", "testsrc", "life")


@dataclass(frozen=True)
class Clip:
    """A generated clip: width x height (portrait), seconds at 30 fps."""

    width: int
    height: int
    seconds: float

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}_{self.seconds:g}s.mp4"


@dataclass(frozen=True)
class Plan:
    """What a run measures (full or --quick)."""

    clips: tuple[Clip, ...]
    slowfast_clips: tuple[Clip, ...]
    ksvqe_overrides: tuple[str, ...] = ()
    simplevqa_overrides: tuple[str, ...] = ()
    train_videos: int = 48
    val_videos: int = 4
    train_clip: Clip = Clip(360, 640, 1.5)
    train_epochs: int = 2
    train_overrides: tuple[str, ...] = ()
    loader_items: int = 6
    forward_videos: int = 2
    forward_repeat: int = 2
    repeat: int = 3


FULL = Plan(clips=(Clip(540, 960, 10), Clip(1080, 1920, 10)),
            slowfast_clips=(Clip(540, 960, 10), Clip(540, 960, 60)))
QUICK_VIEW = "data.test.args.sample_types"
QUICK = Plan(
    clips=(Clip(96, 160, 2), Clip(192, 320, 2)),
    slowfast_clips=(Clip(96, 160, 1), Clip(96, 160, 2)),
    ksvqe_overrides=(f"{QUICK_VIEW}.technical.clip_len=4", f"{QUICK_VIEW}.technical.num_clips=1",
                     f"{QUICK_VIEW}.technical.aligned=4"),  # the reference asserts clip_len % aligned == 0
    simplevqa_overrides=(f"{QUICK_VIEW}.simpleVQA.clip_len=4", f"{QUICK_VIEW}.simpleVQA.t_frag=4",
                         f"{QUICK_VIEW}.simpleVQA.resize=72", f"{QUICK_VIEW}.simpleVQA.crop=64",
                         f"{QUICK_VIEW}.simpleVQA.frame_interval=2"),
    train_videos=8, val_videos=4, train_clip=Clip(96, 160, 1), train_epochs=1,
    train_overrides=("num_workers=0",), loader_items=2, forward_videos=1, forward_repeat=1, repeat=1)


@dataclass
class Context:
    """One run: its plan, work folder, videos and test configs; samples the views section made."""

    plan: Plan
    work: Path
    videos: list[Path]
    ksvqe: Config
    simplevqa: Config
    samples: dict[str, list[dict]] = field(default_factory=dict)  # model -> one sample per video


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(smallest wall time of `repeat` calls, the last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench_clip(clip: Clip, folder: Path, source: str = "testsrc2", seed: int = 0) -> Path:
    """`clip` of a lavfi `source` with temporal noise (H.264 CRF 23), cached: an existing file is reused."""
    path = folder / (clip.name if (source, seed) == ("testsrc2", 0) else f"{source}_{seed}_{clip.name}")
    if path.is_file():
        return path
    graph = f"{source}=size={clip.width}x{clip.height}:rate={FPS},noise=alls=12:allf=t+u:all_seed={seed}"
    return make_clip(path, graph, round(clip.seconds * FPS), rate=FPS, crf=23)


def video_info(path: Path) -> dict[str, Any]:
    """Frames, frame rate, seconds and size of a video."""
    reader = VideoReader(str(path))
    frame = reader.read([0])
    return {"frames": reader.num_frames, "fps": reader.fps(), "seconds": reader.num_frames / (reader.fps() or FPS),
            "width": frame.shape[2], "height": frame.shape[1]}


def remove_tree(path: Path) -> None:
    """Remove the folder `path` if it exists."""
    if path.is_dir():
        shutil.rmtree(path)


def _tree(pid: int) -> list[int]:
    """pid and its live descendants (Linux /proc)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            try:
                pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        i += 1
    return pids


def _hwm_mib(pid: int) -> int:
    """Peak resident memory (VmHWM) of a live process in MiB; 0 once it is gone."""
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) // 1024
    except (OSError, AttributeError):
        return 0


def run_measured(cmd: Sequence[str], log_file: Path, env: Optional[dict] = None, cwd: Path = ROOT
                 ) -> tuple[float, int]:
    """Run `cmd`; return (wall seconds, peak RSS in MiB of its largest process). The peak is each
    process's own high-water mark (VmHWM, sampled every 50 ms over the process tree): a forked
    child's ru_maxrss would include this benchmark's own memory at fork time."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    peaks: dict[int, int] = {}
    with open(log_file, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            for pid in _tree(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), _hwm_mib(pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}); see {log_file}:\n"
                           + log_file.read_text()[-3000:])
    return seconds, max(peaks.values(), default=0)


def ksvqe_config(plan: Plan) -> Config:
    """config/Kwai_KSVQE_test.yml without pretrained weights, with the plan's view overrides."""
    return load_config(ROOT / "config" / "Kwai_KSVQE_test.yml",
                       ["model.args.KSVQE.backbone.pretrained=false", *plan.ksvqe_overrides])


def simplevqa_config(plan: Plan, feature_root: Path) -> Config:
    """config/kwai_simpleVQA_test.yml reading SlowFast features from `feature_root`."""
    return load_config(ROOT / "config" / "kwai_simpleVQA_test.yml",
                       [f"data.test.args.data_prefix_3D={feature_root}", *plan.simplevqa_overrides])


def dataset_for(cfg: Config, videos: Sequence[Path]):
    """The test split's Dataset class over `videos` (video_name = file name)."""
    records = [VideoRecord(video_name=p.name, path=str(p), label=None, line=i) for i, p in enumerate(videos, 1)]
    spec = cfg["data"]["test"]
    return DATASETS.get(spec["type"])(spec["args"], records=records)


def machine() -> dict[str, Any]:
    """CPU, cores, torch and Python versions of this machine."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def table(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of `columns` of `rows` (floats with 3 significant digits)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)
