#!/usr/bin/env python
"""Speed and memory benchmarks: decoding, dataset views, SlowFast extraction, model forward, training.

    python benchmarks/run.py                        # full run (about 6 minutes on an idle 2-core CPU)
    python benchmarks/run.py --quick                # tiny clips and sizes (about a minute; CI)
    python benchmarks/run.py --videos DIR --only decode,views --json results.json

Sections (--only, comma-separated):
  startup   every entry point: wall time of `python ENTRY -h` and of ENTRY ending in a usage error
            (exit 2) after the imports its work needs, each against a bare `python -c "import torch"`
            timed in the same run (ratio = time / import torch; target for -h: at most 1.5)
  decode    the decoder alone (datasets.decoding: decord, 1 thread) decoding exactly the distinct frames
            each test view's sampler asks for = the decode bound of that view; and, for reference,
            ffmpeg -benchmark decoding every frame (1 thread, no RGB conversion)
  views     one test sample per video through the real Dataset classes: KSVQE (config/Kwai_KSVQE_test.yml:
            3 clips x 32 frames, 9x9 fragments of 32 px, 112x112 resize view) and SimpleVQA
            (config/kwai_simpleVQA_test.yml: 8 frames, 520 resize, 448 crop); ratio = bound / time
            (1.0 = as fast as decoding alone); and the DataLoader with 2 workers
  slowfast  SlowFast_features.py (a random checkpoint loaded with --weights, as the reference loads
            it; --num_workers 0) on a 10 s and a 60 s clip: seconds per video and per second of
            video, peak RSS of the process; fp32 (the default) and, where the CPU has native bf16,
            --amp bf16 with its largest feature difference to fp32
  forward   SimpleVQA and KSVQE (random weights) on those samples, fp32 and bf16 autocast with
            channels-last convolutions: seconds per video (first video, best of 2 calls so that
            one-time kernel set-up is not timed; 1 with --quick), max |score difference| over the videos
  engine    the engine's speed changes, old vs new, on the CPU: EMA update (state-dict loop vs one
            fused foreach update; EMA memory with the frozen CLIP/CONTRIQUE towers copied vs shared),
            Swin window attention (explicit softmax vs F.scaled_dot_product_attention, fp32 and bf16
            autocast, one KSVQE stage-0 video), bytes per collated sample (float32 views with
            KSVQE's fragment sent twice vs uint8 views sent once)
  train     train.py with config/demo_simpleVQA.yml (data paths pointed at generated clips with
            random SlowFast features; cache_features off, so every epoch runs the data path and the
            network) on 1 process, and train_ddp.py under torchrun with 2 gloo
            processes: samples/s of the last epoch, scaling efficiency = DDP / (2 x 1 process)
  reference the public reference repository (--reference DIR, a checkout of
            github.com/lixinustc/KVQ-Challenge-CVPR-NTIRE2024) on the same clips, side by side with
            ours: its KSVQE and SimpleVQA test views (its own Dataset classes, imported from DIR by
            benchmarks/reference_views.py) and its SlowFast_features.py (random weights: a random
            checkpoint in a private TORCH_HOME, --num_workers 0 as ours; ours is run again right
            before it, clip by clip); ratio = reference / ours (> 1: ours faster). Skipped, with the reason, without --reference or when DIR or
            OpenCV is missing (--reference_python / --reference_pythonpath: see docs/benchmarks.md)

Clips are H.264 (libx264 veryfast, CRF 23, yuv420p, 30 fps; testsrc2 with temporal noise) made with
imageio-ffmpeg's ffmpeg and cached under --work (default benchmarks/.cache, git-ignored). Times
are wall-clock seconds, best of --repeat runs. Prints a table per section and writes a JSON
summary (--json, default <work>/results.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("startup", "decode", "views", "slowfast", "forward", "engine", "train", "reference")

from kvq.cli import log_level, make_parser, setup_logging  # noqa: E402  (standard library only)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--videos", nargs="+", default=None, metavar="PATH_OR_GLOB",
                   help="measure decode/views/forward on these files, folders or globs instead of generated clips")
    p.add_argument("--quick", action="store_true", help="tiny clips, sizes and iterations (CI)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache",
                   help="folder for generated clips and run outputs (reused between runs)")
    p.add_argument("--json", type=Path, default=None, help="JSON summary (default <work>/results.json)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (best kept; default 3, quick 1)")
    p.add_argument("--reference", type=Path, default=None, metavar="DIR",
                   help="a checkout of the public reference repository: time its views and SlowFast_features.py")
    p.add_argument("--reference_python", default=sys.executable,
                   help="python that runs the reference (needs its extras, e.g. OpenCV; default: this one)")
    p.add_argument("--reference_pythonpath", default="", metavar="DIRS",
                   help="extra PYTHONPATH for the reference only (e.g. a pip --target folder with OpenCV)")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # -h and usage errors are answered before torch is imported
    setup_logging(log_level(ARGS))


import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from imageio_ffmpeg import get_ffmpeg_exe  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from datasets import collate  # noqa: E402
from datasets.annotations import VideoRecord  # noqa: E402
from datasets.decoding import VideoReader  # noqa: E402
from datasets.features import write_random_features  # noqa: E402
from datasets.normalize import NORMALIZATIONS  # noqa: E402
from kvq.config import Config, load_config  # noqa: E402
from kvq.core.device import autocast, to_channels_last  # noqa: E402
from kvq.engine.ema import ModelEMA  # noqa: E402
from kvq.eval.predict import clip_inputs, video_scores  # noqa: E402
from kvq.api.inference import expand_videos  # noqa: E402
from kvq.core.io import atomic_write_text  # noqa: E402
from datasets.registry import DATASETS  # noqa: E402
from models import create_model  # noqa: E402
from models.swin3d import WindowAttention3D, fragment_gate, shifted_window_mask  # noqa: E402

FFMPEG = get_ffmpeg_exe()
FPS = 30


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
    attention_grid: tuple[int, int, int] = (16, 56, 56)  # KSVQE stage 0: 32 frames of 224 px
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
    train_overrides=("num_workers=0",), loader_items=2, forward_videos=1, forward_repeat=1,
    attention_grid=(8, 14, 14), repeat=1)

SOURCES = ("testsrc2", "smptehdbars", "rgbtestsrc", "mandelbrot", "testsrc", "life")


# -- helpers --------------------------------------------------------------------------------------
def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(smallest wall time of `repeat` calls, the last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def make_clip(clip: Clip, folder: Path, source: str = "testsrc2", seed: int = 0) -> Path:
    """Encode `clip` (cached: an existing file is reused)."""
    path = folder / (clip.name if (source, seed) == ("testsrc2", 0) else f"{source}_{seed}_{clip.name}")
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    graph = f"{source}=size={clip.width}x{clip.height}:rate={FPS},noise=alls=12:allf=t+u:all_seed={seed}"
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
                    "-frames:v", str(round(clip.seconds * FPS)), "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "23", "-pix_fmt", "yuv420p", str(tmp)], check=True)
    tmp.replace(path)
    return path


def ffmpeg_decode_seconds(path: Path) -> float:
    """rtime of `ffmpeg -benchmark` decoding every frame with one thread (no output)."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-nostats", "-benchmark", "-threads", "1", "-i", str(path),
                          "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"rtime=([\d.]+)s", out)
    if not match:
        raise RuntimeError(f"ffmpeg -benchmark printed no rtime for {path}:\n{out[-2000:]}")
    return float(match.group(1))


def video_info(path: Path) -> dict[str, Any]:
    reader = VideoReader(str(path))
    frame = reader.read([0])
    return {"frames": reader.num_frames, "fps": reader.fps(), "seconds": reader.num_frames / (reader.fps() or FPS),
            "width": frame.shape[2], "height": frame.shape[1]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


# -- configs and datasets -------------------------------------------------------------------------
def ksvqe_config(plan: Plan) -> Config:
    return load_config(ROOT / "config" / "Kwai_KSVQE_test.yml",
                       ["model.args.KSVQE.backbone.pretrained=false", *plan.ksvqe_overrides])


def simplevqa_config(plan: Plan, feature_root: Path) -> Config:
    return load_config(ROOT / "config" / "kwai_simpleVQA_test.yml",
                       [f"data.test.args.data_prefix_3D={feature_root}", *plan.simplevqa_overrides])


def dataset_for(cfg: Config, videos: Sequence[Path]):
    """The test split's Dataset class over `videos` (video_name = file name)."""
    records = [VideoRecord(video_name=p.name, path=str(p), label=None, line=i) for i, p in enumerate(videos, 1)]
    spec = cfg["data"]["test"]
    return DATASETS.get(spec["type"])(spec["args"], records=records)


# -- sections -------------------------------------------------------------------------------------
@dataclass
class Context:
    plan: Plan
    work: Path
    videos: list[Path]
    ksvqe: Config
    simplevqa: Config
    samples: dict[str, list[dict]] = field(default_factory=dict)  # model -> one sample per video


def bench_decode(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    views = {"KSVQE": ctx.ksvqe, "SimpleVQA": ctx.simplevqa}
    for path in ctx.videos:
        info = video_info(path)
        row = {"video": path.name, **info}
        row["ffmpeg_all_frames_s"] = min(ffmpeg_decode_seconds(path) for _ in range(ctx.plan.repeat))
        for model, cfg in views.items():
            data = dataset_for(cfg, [path])
            indices = np.concatenate([s(info["frames"], False, None) for s in data.samplers.values()])
            seconds, _ = best_time(lambda: VideoReader(str(path), data.decoder).read_unique(indices), ctx.plan.repeat)
            row[f"{model}_frames"] = int(len(np.unique(indices)))
            row[f"{model}_bound_s"] = seconds
        rows.append(row)
    return rows


def bench_views(ctx: Context, decode: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bounds = {r["video"]: r for r in decode}
    rows = []
    for model, cfg in (("KSVQE", ctx.ksvqe), ("SimpleVQA", ctx.simplevqa)):
        ctx.samples[model] = []
        for path in ctx.videos:
            data = dataset_for(cfg, [path])
            seconds, sample = best_time(lambda: data[0], ctx.plan.repeat)
            ctx.samples[model].append(sample)
            row = {"model": model, "video": path.name, "view_s": seconds}
            bound = bounds.get(path.name)
            if bound:
                row["per_video_second_s"] = seconds / bound["seconds"]
                row["bound_s"] = bound[f"{model}_bound_s"]
                row["ratio_to_bound"] = bound[f"{model}_bound_s"] / seconds
            rows.append(row)
        items = [p for _, p in zip(range(ctx.plan.loader_items), _cycle(ctx.videos))]
        data = dataset_for(cfg, items)
        for workers in (0, 2):
            loader = DataLoader(data, batch_size=1, num_workers=workers, collate_fn=collate)
            seconds, _ = best_time(lambda: sum(1 for _ in loader), 1)
            rows.append({"model": model, "video": f"DataLoader {len(items)} videos, {workers} workers",
                         "view_s": seconds / len(items)})
    return rows


def _cycle(items: Sequence[Path]):
    while True:
        yield from items


def slowfast_command(clip: Clip, ctx: Context, script: Path, out: Path) -> list[str]:
    """SlowFast_features.py (ours or the reference's `script`) on `clip`, one process, no workers."""
    path = make_clip(clip, ctx.work / "clips")
    csv = ctx.work / "slowfast" / f"{clip.name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text(f"filename\n{path.name}\n")
    _remove_tree(out)
    return [str(script), "--video_root", str(path.parent), "--video_csv", str(csv), "--feature_save_folder",
            str(out), "--database", "bench", "--num_workers", "0"]


def feature_arrays(folder: Path) -> np.ndarray:
    """Every clip's slow and fast features of one video folder, concatenated: [clips * 2304]."""
    return np.concatenate([np.load(folder / f"feature_{i}_{p}_feature.npy").ravel()
                           for i in range(len(list(folder.glob("feature_*_slow_feature.npy"))))
                           for p in ("slow", "fast")])


def bench_slowfast(ctx: Context, clips: Optional[Sequence[Clip]] = None) -> list[dict[str, Any]]:
    """Ours in fp32 (the default) and, where the CPU has native bf16, with --amp bf16 (with the
    largest feature difference to fp32), on `clips` (default: the plan's)."""
    rows = []
    amps = ("off", "bf16") if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ("off",)
    weights = random_reference_checkpoint(ctx.work)  # loaded as a user's Kinetics file, as the reference does
    for clip in clips or ctx.plan.slowfast_clips:
        path = make_clip(clip, ctx.work / "clips")
        info = video_info(path)
        for amp in amps:
            out = ctx.work / "slowfast" / f"out_{amp}_{clip.name}"
            cmd = [sys.executable, *slowfast_command(clip, ctx, ROOT / "SlowFast_features.py", out),
                   "--weights", str(weights), "--gpu_ids", "cpu", "--no_progress", "--amp", amp]
            seconds, rss = run_measured(cmd, ctx.work / "slowfast" / f"{amp}_{clip.name}.log")
            row = {"video": path.name, "amp": amp, "seconds": info["seconds"], "clips": max(1, info["frames"] // FPS),
                   "wall_s": seconds, "per_video_second_s": seconds / info["seconds"], "peak_rss_mib": rss}
            if amp != "off":
                ref = feature_arrays(ctx.work / "slowfast" / f"out_off_{clip.name}" / "bench" / path.name)
                got = feature_arrays(out / "bench" / path.name)
                row["max_abs_feature_diff"] = float(np.abs(got - ref).max())
                row["max_abs_feature"] = float(np.abs(ref).max())
            rows.append(row)
    return rows


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


REFERENCE_CONFIGS = {"KSVQE": "config/Kwai_KSVQE_test.yml", "SimpleVQA": "config/kwai_simpleVQA_test.yml"}


def reference_env(args: argparse.Namespace, torch_home: Optional[Path] = None) -> dict[str, str]:
    """The environment of the reference's processes: the reference checkout and --reference_pythonpath first
    on PYTHONPATH (its `datasets` package, not this project's)."""
    paths = (str(args.reference.resolve()), args.reference_pythonpath, os.environ.get("PYTHONPATH", ""))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return {**env, "TORCH_HOME": str(torch_home)} if torch_home else env


def reference_missing(args: argparse.Namespace) -> Optional[str]:
    """Why the reference section cannot run (None: it can)."""
    if args.reference is None:
        return "no --reference DIR given (a checkout of github.com/lixinustc/KVQ-Challenge-CVPR-NTIRE2024)"
    if not (args.reference / "datasets" / "fusion_datasets.py").is_file():
        return f"--reference {args.reference}: not a checkout of the reference (no datasets/fusion_datasets.py)"
    probe = subprocess.run([args.reference_python, "-c", "import cv2, decord, pytorchvideo"], cwd=args.reference,
                           env=reference_env(args), capture_output=True, text=True)
    if probe.returncode != 0:
        return (f"{args.reference_python} cannot import the reference's needs (cv2, decord, pytorchvideo): "
                f"{probe.stderr.strip().splitlines()[-1:]}; see docs/benchmarks.md")
    return None


def reference_view_seconds(args: argparse.Namespace, ctx: Context, model: str) -> dict[str, float]:
    """{video file name: seconds} of the reference's test view of `model` (best of --repeat)."""
    overrides = ctx.plan.ksvqe_overrides if model == "KSVQE" else ctx.plan.simplevqa_overrides
    prefix = QUICK_VIEW + "."
    sets = [a for o in overrides for a in ("--set", o[len(prefix):])]
    cmd = [args.reference_python, str(ROOT / "benchmarks" / "reference_views.py"), "--config",
           REFERENCE_CONFIGS[model], "--videos", *map(str, ctx.videos), "--features", str(ctx.work / "features"),
           "--repeat", str(ctx.plan.repeat), *sets]
    proc = subprocess.run(cmd, cwd=args.reference, env=reference_env(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference's {model} views failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"video"')]
    return {r["video"]: r["view_s"] for r in rows}


def random_reference_checkpoint(work: Path) -> Path:
    """A random-weights SLOWFAST_8x8_R50.pyth (the Kinetics file's format) in a TORCH_HOME's hub
    cache (its parents[2]), so that the reference's `slowfast_r50(pretrained=True)` loads it instead
    of downloading Kinetics weights; ours loads it with --weights. Returns the file."""
    from pytorchvideo.models.hub import slowfast_r50

    home = work / "reference_torch_home"
    file = home / "hub" / "checkpoints" / "SLOWFAST_8x8_R50.pyth"
    if not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save({"model_state": slowfast_r50(pretrained=False).state_dict()}, file)
    return file


def bench_reference(args: argparse.Namespace, ctx: Context, summary: dict[str, Any]) -> dict[str, Any]:
    """The reference's views and SlowFast_features.py beside ours (our views from the views section
    when it ran; our SlowFast_features.py measured again right before the reference's, clip by
    clip); ratio = reference / ours."""
    why = reference_missing(args)
    if why:
        return {"skipped": why}
    rows = []
    ours_views = {(r["model"], r["video"]): r["view_s"] for r in summary.get("views", [])}
    for model in REFERENCE_CONFIGS:
        if not all((model, v.name) in ours_views for v in ctx.videos):
            cfg = ctx.ksvqe if model == "KSVQE" else ctx.simplevqa
            for path in ctx.videos:
                data = dataset_for(cfg, [path])
                ours_views[model, path.name] = best_time(lambda: data[0], ctx.plan.repeat)[0]
        theirs = reference_view_seconds(args, ctx, model)
        for path in ctx.videos:
            rows.append({"measure": f"{model} test view, s/video", "video": path.name,
                         "ours": ours_views[model, path.name], "reference": theirs[path.name]})
    home = random_reference_checkpoint(ctx.work).parents[2]
    for clip in ctx.plan.slowfast_clips:
        # ours again right before the reference, clip by clip: the machine's load drifts over minutes
        ours_sf = {(r["video"], r["amp"]): r for r in bench_slowfast(ctx, [clip])}
        cmd = [args.reference_python, *slowfast_command(clip, ctx, args.reference / "SlowFast_features.py",
                                                        ctx.work / "slowfast" / f"reference_out_{clip.name}")]
        seconds, rss = run_measured(cmd, ctx.work / "slowfast" / f"reference_{clip.name}.log",
                                    reference_env(args, home), cwd=args.reference)
        for (video, amp), ours in ours_sf.items():
            if video == clip.name:
                variant = "" if amp == "off" else f" (ours --amp {amp})"
                rows.append({"measure": f"SlowFast_features.py, s/video{variant}", "video": clip.name,
                             "ours": ours["wall_s"], "reference": seconds})
                rows.append({"measure": f"SlowFast_features.py, peak RSS MiB{variant}", "video": clip.name,
                             "ours": float(ours["peak_rss_mib"]), "reference": float(rss)})
    for r in rows:
        r["ratio"] = r["reference"] / r["ours"]
    return {"checkout": str(args.reference), "python": args.reference_python, "rows": rows}


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


def bench_forward(ctx: Context) -> list[dict[str, Any]]:
    """fp32 vs bf16 autocast + channels-last on the videos' test samples."""
    device = torch.device("cpu")
    rows = []
    for name, cfg in (("SimpleVQA", ctx.simplevqa), ("KSVQE", ctx.ksvqe)):
        torch.manual_seed(0)
        model = create_model(cfg).eval()
        samples = (ctx.samples.get(name) or [dataset_for(cfg, [p])[0] for p in ctx.videos])[:ctx.plan.forward_videos]
        batches = [clip_inputs(collate([s]), device) for s in samples]
        row: dict[str, Any] = {"model": name, "clips_per_video": batches[0][1], "videos": len(samples)}
        scores = {}
        for variant, amp in (("fp32", "off"), ("bf16_channels_last", "bf16")):
            if amp != "off":
                to_channels_last(model)

            def score(batch: tuple[dict, int]) -> torch.Tensor:
                with torch.no_grad(), autocast(device, amp):
                    return video_scores(model(batch[0])["score"], batch[1]).view(-1).float()

            seconds, first = best_time(lambda: score(batches[0]), ctx.plan.forward_repeat)
            row[f"{variant}_s"] = seconds
            scores[variant] = torch.cat([first, *(score(b) for b in batches[1:])])
        diff = (scores["fp32"] - scores["bf16_channels_last"]).abs().max()
        rows.append({**row, "speedup": row["fp32_s"] / row["bf16_channels_last_s"], "max_abs_score_diff": float(diff),
                     "score_range_fp32": float(scores["fp32"].max() - scores["fp32"].min())})
    return rows


def old_ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    """The EMA update before kvq.engine.ema fused it: every floating state entry lerped, one by one
    (frozen parameters included), integers copied. `ema`: a state dict."""
    for key, value in model.state_dict().items():
        if ema[key].is_floating_point():
            ema[key].lerp_(value.to(ema[key].dtype), 1.0 - decay)
        else:
            ema[key].copy_(value)


def explicit_window_attention(attn: WindowAttention3D, x: torch.Tensor, window: tuple[int, int, int],
                              mask: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """WindowAttention3D.forward before F.scaled_dot_product_attention (GRPB gate and shift mask):
    the scores, biased and masked, then softmax, as explicit tensors. x [B * nW, N, C]."""
    bn, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(bn, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    nw = gate.shape[0]
    bias = (attn._bias(attn.relative_position_bias_table, window)[None] * gate[:, None]
            + attn._bias(attn.fragment_position_bias_table, window) * (1 - gate[:, None]))
    scores = scores.view(bn // nw, nw, attn.num_heads, n, n) + bias[None] + mask[None, :, None]
    out = scores.view(bn, attn.num_heads, n, n).softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(bn, n, c))


def _batch_bytes(batch: dict[str, Any]) -> int:
    return sum(v.nbytes for v in batch.values() if torch.is_tensor(v))


def bench_engine(ctx: Context) -> list[dict[str, Any]]:
    """Old vs new for the EMA update, the window attention and the bytes a batch carries."""
    repeat = ctx.plan.repeat
    rows = []
    torch.manual_seed(0)
    model = create_model(ctx.ksvqe).train()
    ema = ModelEMA(model, 0.999)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    old_s, _ = best_time(lambda: old_ema_update(old, model, 0.999), repeat)
    new_s, _ = best_time(lambda: ema.update(model), repeat)
    rows.append({"change": "EMA update, KSVQE", "old": old_s, "new": new_s, "unit": "s", "old/new": old_s / new_s})
    full = sum(v.nbytes for v in ema.module.state_dict().values()) / 2**20
    own = sum(v.nbytes for v in ema.state_dict().values()) / 2**20
    rows.append({"change": "EMA memory and checkpoint share, KSVQE", "old": full, "new": own, "unit": "MiB",
                 "old/new": full / own})

    grid, window, shift = ctx.plan.attention_grid, (8, 7, 7), (4, 3, 3)
    attn = WindowAttention3D(96, window, 3, frag_bias=True).eval()
    mask = shifted_window_mask(grid, window, shift, torch.device("cpu"))
    gate = fragment_gate(grid, window, shift, torch.device("cpu"))
    x = torch.randn(mask.shape[0], 8 * 7 * 7, 96)
    for amp in ("off", "bf16"):
        with torch.no_grad(), autocast(torch.device("cpu"), amp):
            old_s, a = best_time(lambda: explicit_window_attention(attn, x, window, mask, gate), repeat)
            new_s, b = best_time(lambda: attn(x, window, mask, gate), repeat)
        rows.append({"change": f"window attention {grid} amp {amp}", "old": old_s, "new": new_s, "unit": "s",
                     "old/new": old_s / new_s, "max_abs_diff": float((a.float() - b.float()).abs().max())})

    for name, cfg in (("KSVQE", ctx.ksvqe), ("SimpleVQA", ctx.simplevqa)):
        sample = (ctx.samples.get(name) or [dataset_for(cfg, ctx.videos[:1])[0]])[0]
        floats = {k: NORMALIZATIONS[n](sample[k]) for k, n in sample["normalization"].items()}
        before = {**sample, **floats, **({"fragment": floats["technical"]} if "technical" in floats else {})}
        old_b, new_b = _batch_bytes(collate([before])), _batch_bytes(collate([sample]))
        rows.append({"change": f"bytes per {name} sample", "old": old_b / 2**20, "new": new_b / 2**20,
                     "unit": "MiB", "old/new": old_b / new_b})
    return rows


def make_train_data(ctx: Context) -> Path:
    """Train/val clips (varied lavfi sources, random MOS and SlowFast features), cached."""
    plan = ctx.plan
    root = ctx.work / f"train_data_{plan.train_clip.name[:-4]}_{plan.train_videos}"
    n = plan.train_videos + plan.val_videos
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        path = make_clip(plan.train_clip, root, SOURCES[i % len(SOURCES)], seed=i)
        names.append(path.name)
    write_random_features(root / "feat", names, np.random.default_rng(0))
    mos = rng.uniform(1, 5, size=n)
    rows = [f"{a},{b:.3f}\n" for a, b in zip(names, mos)]
    (root / "train.csv").write_text("filename,score\n" + "".join(rows[:plan.train_videos]))
    (root / "val.csv").write_text("filename,score\n" + "".join(rows[plan.train_videos:]))
    return root


def bench_train(ctx: Context) -> dict[str, Any]:
    data = make_train_data(ctx)
    raw = yaml.safe_load((ROOT / "config" / "demo_simpleVQA.yml").read_text())
    for split, anno in (("train", "train.csv"), ("val", "val.csv"), ("test", "val.csv")):
        raw["data"][split]["args"].update(anno_file=str(data / anno), data_prefix=str(data),
                                          data_prefix_3D=str(data / "feat"))
    # the data path and the network run every epoch (the demo caches the frozen features instead,
    # which DDP cannot, and which would time the head alone)
    raw.update(num_epochs=ctx.plan.train_epochs, save_model=False, cache_features=False)
    raw["model"]["args"]["simpleVQA"]["head"]["standardize"] = False
    cfg_path = ctx.work / "train" / "demo_simpleVQA_bench.yml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(raw))
    sets = [a for o in ctx.plan.train_overrides for a in ("--set", o)]
    cores = os.cpu_count() or 1
    results = {}
    for name, launcher, env in (
            ("1 process", [], {}),
            ("2-process DDP (gloo)", ["-m", "torch.distributed.run", "--nproc_per_node=2",
                                      f"--master_port={free_port()}"], {"OMP_NUM_THREADS": str(max(1, cores // 2))})):
        out = ctx.work / "train" / ("single" if not launcher else "ddp")
        _remove_tree(out)
        script = "train.py" if not launcher else "train_ddp.py"
        cmd = [sys.executable, *launcher, str(ROOT / script), "-o", str(cfg_path), "-r", str(out),
               "--log_dir", str(out / "log"), "--gpu_id", "cpu", "--no_progress", *sets]
        wall, rss = run_measured(cmd, out.with_suffix(".log"), {**os.environ, "PYTHONPATH": str(ROOT), **env})
        history = json.loads(next(out.glob("*_history.json")).read_text())
        seconds = history[-1]["seconds"]
        results[name] = {"epoch_s": seconds, "samples_per_s": ctx.plan.train_videos / seconds,
                         "epochs": len(history), "wall_s": wall, "peak_rss_mib": rss}
    single, ddp = results["1 process"]["samples_per_s"], results["2-process DDP (gloo)"]["samples_per_s"]
    return {"config": "config/demo_simpleVQA.yml", "train_videos": ctx.plan.train_videos,
            "clip": asdict(ctx.plan.train_clip), "runs": results, "scaling_efficiency": ddp / (2 * single)}


# entry point -> arguments that end in a usage error (exit 2) once it has imported what its work needs
STARTUP_ENTRIES: dict[str, tuple[str, ...]] = {
    "train.py": ("-o", "{missing}.yml"),
    "train_ddp.py": ("-o", "{missing}.yml"),
    "test.py": ("-o", "{missing}.yml"),
    "SlowFast_features.py": ("--video_root", "{missing}", "--video_csv", "{missing}.csv"),
    "metric_score.py": ("{missing}.csv", "{missing}"),
    "scripts/make_demo_dataset.py": ("--out", "{missing}", "--sources", "0"),
    "scripts/convert_annotations.py": ("--format", "kvq", "{missing}.csv", "{missing}_out.csv"),
    "scripts/run_splits.py": ("-o", "{missing}.yml"),
    "scripts/check_reference.py": ("{missing}",),
    "benchmarks/run.py": ("--only", "no_such_section"),
}


def command_seconds(cmd: Sequence[str], status: int, repeat: int) -> float:
    """Best wall time of `repeat` runs of `cmd` (run from the repository root), which must exit `status`."""
    def once() -> None:
        proc = subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != status:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}, not {status}:\n"
                               + (proc.stdout + proc.stderr)[-3000:])

    return best_time(once, repeat)[0]


def bench_startup(work: Path, repeat: int) -> dict[str, Any]:
    """`ENTRY -h` and ENTRY up to a usage error after its imports, against `python -c "import torch"`."""
    torch_s = command_seconds([sys.executable, "-c", "import torch"], 0, repeat)
    missing = str(work / "startup" / "does_not_exist")
    rows = []
    for entry, bad_args in STARTUP_ENTRIES.items():
        help_s = command_seconds([sys.executable, entry, "-h"], 0, repeat)
        work_s = command_seconds([sys.executable, entry, *(a.format(missing=missing) for a in bad_args)], 2, repeat)
        rows.append({"entry": entry, "help_s": help_s, "help_ratio": help_s / torch_s, "work_imports_s": work_s,
                     "work_ratio": work_s / torch_s})
    return {"import_torch_s": torch_s, "entries": rows}


# -- main -----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, evaluated on what was measured (None when not measured)."""
    out: dict[str, Any] = {}
    views = [r for r in summary.get("views", []) if "ratio_to_bound" in r]
    if views:
        out["views_at_least_60pct_of_decode_bound"] = min(r["ratio_to_bound"] for r in views) >= 0.6
    sf = [r for r in summary.get("slowfast", []) if r["amp"] == "off"]
    if len(sf) >= 2:
        out["slowfast_rss_growth_mib"] = sf[-1]["peak_rss_mib"] - sf[0]["peak_rss_mib"]
    startup = summary.get("startup")
    if startup:
        out["help_at_most_1.5x_import_torch"] = max(r["help_ratio"] for r in startup["entries"]) <= 1.5
    ref = summary.get("reference", {}).get("rows", [])
    for measure, name in (("KSVQE test view, s/video", "ksvqe_views"), ("SimpleVQA test view, s/video",
                                                                        "simplevqa_view"),
                          ("SlowFast_features.py, s/video", "slowfast_per_video"),
                          ("SlowFast_features.py, s/video (ours --amp bf16)", "slowfast_per_video_amp_bf16")):
        ratios = [r["ratio"] for r in ref if r["measure"] == measure]
        if ratios:
            out[f"{name}_at_least_2x_reference"] = min(ratios) >= 2
    for measure, name in (("SlowFast_features.py, peak RSS MiB", "slowfast_peak_rss_below_reference"),
                          ("SlowFast_features.py, peak RSS MiB (ours --amp bf16)",
                           "slowfast_amp_bf16_peak_rss_below_reference")):
        rss = [r for r in ref if r["measure"] == measure]
        if rss:
            out[name] = all(r["ours"] < r["reference"] for r in rss)
    fwd = summary.get("forward", [])
    if fwd:
        out["bf16_channels_last_faster"] = all(r["speedup"] > 1 for r in fwd)
    return out


def main(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(f"error: unknown sections {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    if args.repeat:
        plan = replace(plan, repeat=args.repeat)
    work = args.work / ("quick" if args.quick else "full")
    if args.videos:
        paths, missing = expand_videos(args.videos)
        if missing:
            print("error: " + "; ".join(f"--videos {p}: {e}" for p, e in missing), file=sys.stderr)
            return 2
        videos = [Path(p) for p in paths]
    else:
        videos = [make_clip(c, work / "clips") for c in plan.clips]
    features = work / "features"
    write_random_features(features, [v.name for v in videos], np.random.default_rng(0))
    ctx = Context(plan, work, videos, ksvqe_config(plan), simplevqa_config(plan, features))
    summary: dict[str, Any] = {"machine": machine(), "quick": args.quick, "sections": only,
                               "videos": [{"video": v.name, **video_info(v)} for v in videos]}
    t_start = time.perf_counter()
    if "startup" in only:
        summary["startup"] = bench_startup(work, plan.repeat)
        print(table(f"\n== startup (seconds; ratio = time / `python -c 'import torch'` = "
                    f"{summary['startup']['import_torch_s']:.2f} s)", summary["startup"]["entries"],
                    ["entry", "help_s", "help_ratio", "work_imports_s", "work_ratio"]))
    if "decode" in only:
        summary["decode"] = bench_decode(ctx)
        print(table("\n== decode (seconds per video; bound = the decoder alone on the distinct sampled frames)",
                    summary["decode"], ["video", "frames", "ffmpeg_all_frames_s", "KSVQE_frames", "KSVQE_bound_s",
                                        "SimpleVQA_frames", "SimpleVQA_bound_s"]))
    if "views" in only:
        summary["views"] = bench_views(ctx, summary.get("decode", []))
        print(table("\n== views through the Dataset (seconds per video; ratio = decode bound / view time)",
                    summary["views"], ["model", "video", "view_s", "per_video_second_s", "bound_s",
                                       "ratio_to_bound"]))
    if "slowfast" in only:
        summary["slowfast"] = bench_slowfast(ctx)
        print(table("\n== SlowFast_features.py (random weights, 1 process; amp bf16 where the CPU has native bf16)",
                    summary["slowfast"], ["video", "amp", "seconds", "clips", "wall_s", "per_video_second_s",
                                          "peak_rss_mib", "max_abs_feature_diff", "max_abs_feature"]))
    if "forward" in only:
        summary["forward"] = bench_forward(ctx)
        print(table("\n== model forward per video (random weights, test views)", summary["forward"],
                    ["model", "clips_per_video", "fp32_s", "bf16_channels_last_s", "speedup", "max_abs_score_diff",
                     "score_range_fp32"]))
    if "engine" in only:
        summary["engine"] = bench_engine(ctx)
        print(table("\n== engine speed changes, old vs new (CPU)", summary["engine"],
                    ["change", "old", "new", "unit", "old/new", "max_abs_diff"]))
    if "train" in only:
        summary["train"] = bench_train(ctx)
        rows = [{"run": k, **v} for k, v in summary["train"]["runs"].items()]
        print(table(f"\n== training, {summary['train']['config']} ({summary['train']['train_videos']} videos; "
                    f"scaling efficiency {summary['train']['scaling_efficiency']:.2f})", rows,
                    ["run", "epochs", "epoch_s", "samples_per_s", "wall_s", "peak_rss_mib"]))
    if "reference" in only:
        summary["reference"] = bench_reference(args, ctx, summary)
        if "skipped" in summary["reference"]:
            print(f"\n== reference: skipped: {summary['reference']['skipped']}")
        else:
            print(table("\n== ours vs the reference repository, same clips (ratio = reference / ours: > 1 = ours "
                        "faster or smaller)", summary["reference"]["rows"],
                        ["measure", "video", "ours", "reference", "ratio"]))
    summary["targets"] = targets(summary)
    summary["total_s"] = time.perf_counter() - t_start
    out = args.json or work / "results.json"
    atomic_write_text(out, json.dumps(summary, indent=1, default=str))
    print(f"\ntargets: {json.dumps(summary['targets'])}\n{summary['machine']}\nwrote {out} "
          f"({summary['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
