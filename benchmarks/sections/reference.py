"""Section `reference`: the public reference repository (a checkout of
github.com/lixinustc/KVQ-Challenge-CVPR-NTIRE2024) on the same clips, side by side with ours: its
KSVQE and SimpleVQA test views (benchmarks/reference_views.py) and its SlowFast_features.py."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Optional

from benchmarks.sections.common import QUICK_VIEW, ROOT, Context, best_time, dataset_for, run_measured
from benchmarks.sections.slowfast import bench_slowfast, random_reference_checkpoint, slowfast_command

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

