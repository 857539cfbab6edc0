"""Tiny test videos made with imageio-ffmpeg's ffmpeg binary."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_video(path: Path, size: str = "64x96", frames: int = 40, rate: int = 30, source: str = "testsrc2",
               extra: tuple = ()) -> Path:
    """Encode `frames` frames of a lavfi source (WxH) as H.264 yuv420p mp4 (or by extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = f"{source}=size={size}:rate={rate}" if "=" not in source else source
    cmd = [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-frames:v", str(frames),
           *extra]
    if path.suffix == ".mp4" and "-c:v" not in extra:
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1"]
    subprocess.run(cmd + [str(path)], check=True)
    return path
