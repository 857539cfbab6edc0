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
  train     train.py with config/demo_simpleVQA.yml (data paths pointed at generated clips with
            random SlowFast features; cache_features off, so every epoch runs the data path and the
            network) on 1 process, and train_ddp.py under torchrun with 2 gloo
            processes: samples/s of the last epoch, scaling efficiency = DDP / (2 x 1 process)
  reference the public reference repository (--reference DIR, a checkout of
            github.com/lixinustc/KVQ-Challenge-CVPR-NTIRE2024) on the same clips, side by side with
            ours: its KSVQE and SimpleVQA test views (its own Dataset classes, imported from DIR by
            benchmarks/reference_views.py) and its SlowFast_features.py (random weights: a random
            checkpoint in a private TORCH_HOME, --num_workers 0 as ours; ours is run again right
            before it, clip by clip); ratio = reference / ours (> 1: ours faster). Skipped, with the
            reason, without --reference or when DIR or OpenCV is missing (--reference_python /
            --reference_pythonpath: see docs/benchmarks.md)

Clips are H.264 (libx264 veryfast, CRF 23, yuv420p, 30 fps; testsrc2 with temporal noise) made with
kvq.demo.ffmpeg.make_clip (imageio-ffmpeg's ffmpeg) and cached under --work (default
benchmarks/.cache, git-ignored). Times are wall-clock seconds, best of --repeat runs. Prints a
table per section and writes a JSON summary (--json, default <work>/results.json). Each section's
code is in benchmarks/sections/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("startup", "decode", "views", "slowfast", "forward", "train", "reference")

from kvq.cli import log_level, make_parser, run_main, setup_logging  # noqa: E402  (standard library only)


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)  # -h and usage errors are answered before torch is imported
    setup_logging(log_level(args))
    import numpy as np

    from benchmarks.sections.common import (FULL, QUICK, Context, bench_clip, ksvqe_config, machine,
                                            simplevqa_config, table, video_info)
    from benchmarks.sections.decode import bench_decode
    from benchmarks.sections.forward import bench_forward
    from benchmarks.sections.reference import bench_reference
    from benchmarks.sections.slowfast import bench_slowfast
    from benchmarks.sections.startup import bench_startup
    from benchmarks.sections.train import bench_train
    from benchmarks.sections.views import bench_views
    from datasets.features import write_random_features
    from kvq.api.videos import expand_videos
    from kvq.core.io import atomic_write_text

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
        videos = [bench_clip(c, work / "clips") for c in plan.clips]
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
    run_main(main)
