"""The processed versions of a source clip (dis_label 1..6): one ffmpeg filter chain each."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from kvq.demo.ffmpeg import encode_args, ffmpeg_base, part_path, run_ffmpeg
from kvq.demo.plan import PROCESSED_CRF, DemoParams, SourcePlan, VideoPlan


def processing_filter(v: VideoPlan, w: int, h: int, fps: int) -> Optional[str]:
    """ffmpeg filter chain of a processed version (None: the encode itself is the processing)."""
    o = v.options
    if v.processing == "compression":
        return None
    if v.processing == "downscale":
        return f"scale=w={o['width']}:h={o['height']}:flags=bilinear,scale=w={w}:h={h}:flags=bicubic"
    if v.processing == "blur":
        return f"gblur=sigma={o['sigma']}"
    if v.processing == "noise":
        return f"noise=c0s={o['strength']}:c0f=t+u:c0_seed={o['seed']}"
    if v.processing == "framerate":
        return f"fps=fps={o['fps']},fps=fps={fps},tpad=stop=-1:stop_mode=clone"
    if v.processing == "sharpen":
        a = o["amount"]
        return (f"unsharp=lx=5:ly=5:la={a}:cx=5:cy=5:ca={round(a / 2, 3)}"
                f",eq=contrast={o['contrast']}:saturation={o['saturation']}")
    raise ValueError(f"unknown processing '{v.processing}'")


def process_version(exe: str, v: VideoPlan, plan: SourcePlan, params: DemoParams, src: Path, dst: Path) -> Path:
    """Encode version `v` of the source clip `src` at `dst` (written under `part_path(dst)`, then renamed)."""
    chain = processing_filter(v, plan.width, plan.height, params.fps)
    crf = v.options["crf"] if v.processing == "compression" else PROCESSED_CRF
    cmd = ffmpeg_base(exe) + ["-threads", "1", "-i", str(src)] + (["-vf", chain] if chain else [])
    run_ffmpeg(cmd + encode_args(crf, params.n_frames) + [str(part_path(dst))], f"{v.processing} {v.filename}")
    return part_path(dst).replace(dst)
