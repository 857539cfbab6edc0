"""ffmpeg helpers: the bundled binary, one clip maker (`make_clip`), VMAF.

ffmpeg is the binary bundled with imageio-ffmpeg (libx264, libvmaf). H.264 output is single-threaded
with bitexact muxing, so the same call on the same ffmpeg build gives byte-identical files.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

VMAF_MODEL = "vmaf_v0.6.1neg"
X264_PRESET = "veryfast"
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}  # suffix -> muxer of H.264 clips


class FFmpegError(RuntimeError):
    """ffmpeg lacks a component that is needed, or an ffmpeg command failed."""


@functools.lru_cache(maxsize=None)
def bundled_ffmpeg() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_exe() -> str:
    """The bundled ffmpeg, checked for libx264 and libvmaf."""
    exe = bundled_ffmpeg()
    encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    filters = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    missing = [n for n, text in (("libx264", encoders), ("libvmaf", filters)) if n not in text]
    if missing:
        raise FFmpegError(f"ffmpeg at {exe} lacks {', '.join(missing)}; the demo dataset needs both")
    return exe


def ffmpeg_version(exe: str) -> str:
    """First line of `ffmpeg -version`."""
    out = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def ffmpeg_base(exe: str) -> list[str]:
    """Quiet, non-interactive, overwriting ffmpeg with single-threaded filters."""
    return [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_threads", "1"]


def encode_args(crf: int, n_frames: int, preset: str = X264_PRESET, container: str = "mp4") -> list[str]:
    """Single-threaded, bitexact H.264 yuv420p of exactly n_frames frames, no audio."""
    return ["-an", "-frames:v", str(n_frames), "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
            "-pix_fmt", "yuv420p", "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact",
            "-flags:v", "+bitexact", "-f", container]


def run_ffmpeg(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run an ffmpeg command line; a failure raises FFmpegError with `what`, the command and stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise _failure(cmd, what, proc.returncode, proc.stderr)
    return proc


def _failure(cmd: Sequence[str], what: str, status: int, stderr: str) -> FFmpegError:
    return FFmpegError(f"ffmpeg failed ({what}), exit {status}:\n  {' '.join(cmd)}\n{stderr.strip()[-2000:]}")


def part_path(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to `path` (same suffix)."""
    return path.with_name(f".{path.stem}.part{path.suffix}")


def make_clip(path: str | os.PathLike, source: str | Iterable[np.ndarray], frames: int, *, rate: int = 30,
              crf: int = 23, preset: str = X264_PRESET, options: Sequence[str] = (),
              exe: Optional[str] = None) -> Path:
    """Encode `frames` frames of `source` into `path`: written under `part_path(path)`, then renamed.

    source: a lavfi graph (e.g. "testsrc2=size=64x96:rate=30"), or uint8 RGB frames [H, W, 3]
    piped at `rate` frames per second. A .mp4/.mov/.mkv is H.264 yuv420p (see `encode_args`)
    unless `options` choose a codec (-c:v); other suffixes (images, .avi, .webm) get ffmpeg's
    defaults. options: further output options (e.g. ("-g", "12"); a -vf there replaces the
    H.264 path's `format=yuv420p` filter, -pix_fmt yuv420p still applies). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path)
    frame_iter = None  # the frames of a non-lavfi source
    if isinstance(source, str):
        inputs = ["-f", "lavfi", "-i", source]
    else:
        frame_iter = iter(source)
        first = next(frame_iter)
        frame_iter = itertools.chain([first], frame_iter)
        inputs = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{first.shape[1]}x{first.shape[0]}",
                  "-framerate", str(rate), "-i", "-"]
    cmd = ffmpeg_base(exe or bundled_ffmpeg()) + inputs
    if path.suffix in CONTAINERS and "-c:v" not in options:
        cmd += ["-vf", "format=yuv420p", *options, *encode_args(crf, frames, preset, CONTAINERS[path.suffix])]
    else:
        cmd += ["-frames:v", str(frames), *options]
    cmd.append(str(tmp))
    try:
        if frame_iter is None:
            run_ffmpeg(cmd, f"clip {path}")
        else:
            _pipe_frames(cmd, frame_iter, f"clip {path}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp.replace(path)


def _pipe_frames(cmd: list[str], frames: Iterable[np.ndarray], what: str) -> None:
    """Run `cmd` with the frames' bytes on its standard input."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for frame in frames:
            proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
    except BrokenPipeError:
        pass  # ffmpeg stopped reading: its own error is reported below
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    stderr = proc.communicate()[1].decode(errors="replace")
    if proc.returncode != 0:
        raise _failure(cmd, what, proc.returncode, stderr)


def measure_vmaf(exe: str, distorted: Path, reference: Path, n_frames: int) -> float:
    """Pooled (mean) VMAF of `distorted` against `reference`, single-threaded."""
    graph = (f"[0:v]setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];"
             f"[d][r]libvmaf=model=version={VMAF_MODEL}:n_threads=1:log_fmt=json:log_path=vmaf.json")
    with tempfile.TemporaryDirectory(prefix="vmaf-") as tmp:
        run_ffmpeg(ffmpeg_base(exe) + ["-threads", "1", "-i", str(distorted.resolve()), "-threads", "1",
                                       "-i", str(reference.resolve()), "-lavfi", graph, "-f", "null", "-"],
                   f"VMAF of {distorted.name}", cwd=tmp)
        with open(Path(tmp) / "vmaf.json") as f:
            result = json.load(f)
    if len(result["frames"]) != n_frames:
        raise FFmpegError(f"VMAF of {distorted} compared {len(result['frames'])} frames, expected {n_frames}")
    return float(result["pooled_metrics"]["vmaf"]["mean"])
