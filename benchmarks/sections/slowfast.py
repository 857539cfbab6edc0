"""Section `slowfast`: SlowFast_features.py (random Kinetics-format weights, one process, no
workers) per clip: wall time, peak RSS; fp32 and, where the CPU has native bf16, --amp bf16."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from benchmarks.sections.common import FPS, ROOT, Clip, Context, bench_clip, remove_tree, run_measured, video_info


def slowfast_command(clip: Clip, ctx: Context, script: Path, out: Path) -> list[str]:
    """SlowFast_features.py (ours or the reference's `script`) on `clip`, one process, no workers."""
    path = bench_clip(clip, ctx.work / "clips")
    csv = ctx.work / "slowfast" / f"{clip.name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text(f"filename\n{path.name}\n")
    remove_tree(out)
    return [str(script), "--video_root", str(path.parent), "--video_csv", str(csv), "--feature_save_folder",
            str(out), "--database", "bench", "--num_workers", "0"]


def feature_arrays(folder: Path) -> np.ndarray:
    """Every clip's slow and fast features of one video folder, concatenated: [clips * 2304]."""
    return np.concatenate([np.load(folder / f"feature_{i}_{p}_feature.npy").ravel()
                           for i in range(len(list(folder.glob("feature_*_slow_feature.npy"))))
                           for p in ("slow", "fast")])


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


def bench_slowfast(ctx: Context, clips: Optional[Sequence[Clip]] = None) -> list[dict[str, Any]]:
    """Ours in fp32 (the default) and, where the CPU has native bf16, with --amp bf16 (with the
    largest feature difference to fp32), on `clips` (default: the plan's)."""
    rows = []
    amps = ("off", "bf16") if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ("off",)
    weights = random_reference_checkpoint(ctx.work)  # loaded as a user's Kinetics file, as the reference does
    for clip in clips or ctx.plan.slowfast_clips:
        path = bench_clip(clip, ctx.work / "clips")
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
