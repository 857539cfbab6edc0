"""Section `decode`: the decoder alone on the distinct frames each test view samples (the view's
decode bound), and ffmpeg -benchmark decoding every frame."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.sections.common import Context, best_time, dataset_for, video_info
from datasets.decoding import VideoReader
from kvq.demo.ffmpeg import bundled_ffmpeg


def ffmpeg_decode_seconds(path: Path) -> float:
    """rtime of `ffmpeg -benchmark` decoding every frame with one thread (no output)."""
    out = subprocess.run([bundled_ffmpeg(), "-hide_banner", "-nostats", "-benchmark", "-threads", "1", "-i", str(path),
                          "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"rtime=([\d.]+)s", out)
    if not match:
        raise RuntimeError(f"ffmpeg -benchmark printed no rtime for {path}:\n{out[-2000:]}")
    return float(match.group(1))


def bench_decode(ctx: Context) -> list[dict[str, Any]]:
    """Per video: ffmpeg's time for every frame, and each model's decode bound."""
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
