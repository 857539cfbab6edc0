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

Labels (MOS on 1..5): a processed version gets `1 + MOS_SLOPE * clip(VMAF, 0, 100) / 100`
(VMAF of the version against its source, mean over frames), i.e. 1..4.6; a source gets
`SOURCE_MOS` +- uniform `SOURCE_MOS_JITTER` (4.4..4.6), so a version only reaches its source's
score when VMAF is near 100. Scores are rounded to 6 decimals. The VMAF model is libvmaf's
built-in `vmaf_v0.6.1neg` ("no enhancement gain"): the plain model scores sharpening at 100
(it rewards enhancement), the NEG model scores it below the source like any other change.
Versions other than `compression` are encoded at CRF `PROCESSED_CRF` so that their named
processing dominates; noise is temporal luma noise.

Determinism: every random choice comes from numpy generators seeded by `seed`; ffmpeg runs
single-threaded (x264 `-threads 1`, libvmaf `n_threads=1`) with bitexact muxing, so the same
seed and ffmpeg build give byte-identical videos and identical labels.

Resuming: videos are written under temporary names and renamed; each finished source group
is recorded in `.build/`; an interrupted build with the same parameters resumes from the
finished groups. `.build/` is removed once dataset.json is written.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from tqdm import tqdm

from kvq.core.io import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
VMAF_MODEL = "vmaf_v0.6.1neg"
SOURCE_CRF = 12
PROCESSED_CRF = 18
X264_PRESET = "veryfast"
SOURCE_MOS = 4.5
SOURCE_MOS_JITTER = 0.1
MOS_SLOPE = 3.6
MOS_DECIMALS = 6
MIN_FRAMES = 8
MIN_SOURCES = 3
PHOTO_MARGIN = 1.15
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"val": 0.2, "test": 0.2}
PROCESSINGS = ("source", "compression", "downscale", "blur", "noise", "framerate", "sharpen")
MOS_MAPPING = (f"processed: mos = 1 + {MOS_SLOPE} * clip(vmaf, 0, 100) / 100 (VMAF {VMAF_MODEL} of the "
               f"version against its source, mean over frames); source: mos = {SOURCE_MOS} + "
               f"uniform(-{SOURCE_MOS_JITTER}, {SOURCE_MOS_JITTER}); rounded to {MOS_DECIMALS} decimals")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "retina", "motorcycle_left", "camera", "brick", "grass", "gravel", "moon", "coins",
          "clock", "page")
SYNTHETIC = ("testsrc2", "mandelbrot", "life", "cellauto", "sierpinski", "gradients", "perlin")
MANDELBROT_CENTRES = ((-0.743643887037158, -0.131825904205312), (-0.7453, 0.1127),
                      (0.001643721971153, -0.822467633298876), (-1.25066, 0.02012),
                      (-0.16070135, 1.0375665))
CELLAUTO_RULES = (18, 22, 30, 45, 73, 90, 110, 126, 150)
DATASET_JSON = "dataset.json"
ANNOTATION_FILES = ("train.csv", "val.csv", "test.csv", "train_ksvqe.txt", "val_ksvqe.txt", "test_ksvqe.txt",
                    "truth.csv", "rank-pair-val.xlsx", "test_unlabeled.csv")
KVQ_ANNOTATION_FILES = ("train_data.csv", "val_data.csv", "test_data.csv", "rank-pair-val.xlsx")
LAYOUTS = {"demo": ANNOTATION_FILES, "kvq": KVQ_ANNOTATION_FILES}  # layout -> annotation files it writes
BUILD_DIR = ".build"


class DemoDatasetError(RuntimeError):
    """The demo dataset cannot be built here (existing different dataset, ffmpeg failure...)."""


@dataclass(frozen=True)
class DemoParams:
    """Everything that determines the dataset's content (recorded in dataset.json)."""

    sources: int = 24
    seed: int = 0
    duration: float = 3.0
    width: int = 360
    height: int = 640
    fps: int = 30

    @property
    def n_frames(self) -> int:
        return int(round(self.duration * self.fps))

    def validate(self) -> None:
        if self.sources < MIN_SOURCES:
            raise ValueError(f"sources must be >= {MIN_SOURCES} (one per split at least), got {self.sources}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 32:
            raise ValueError(f"frame size must be even and at least 32x32 (yuv420p), got {self.width}x{self.height}")
        if self.fps <= 0 or self.n_frames < MIN_FRAMES:
            raise ValueError(f"duration*fps must give at least {MIN_FRAMES} frames, "
                             f"got duration={self.duration}, fps={self.fps}")

    def as_dict(self) -> dict:
        return {**asdict(self), "duration": float(self.duration), "version": GENERATOR_VERSION}


@dataclass(frozen=True)
class VideoPlan:
    """One output video: where it goes and how it is made from its source."""

    filename: str
    dis_label: int
    processing: str
    options: dict


@dataclass(frozen=True)
class SourcePlan:
    """One source group (cls_label = index): its content, motion and 7 videos."""

    index: int
    split: str
    content: str
    width: int
    height: int
    motion: dict
    source_mos: float
    videos: list[VideoPlan] = field(default_factory=list)


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


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator per purpose: key (0,) plan, (1,) pairs, (2, i) source i."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _photo_motion(rng: np.random.Generator) -> dict:
    zoom = [round(float(z), 3) for z in rng.uniform(1.0, 1.6, size=2)]
    pan = [[round(float(u), 3) for u in rng.uniform(0.0, 1.0, size=2)] for _ in range(2)]
    return {"zoom": zoom, "pan": pan, "flip": bool(rng.random() < 0.5)}


def _synthetic_motion(name: str, rng: np.random.Generator, duration: float) -> dict:
    seed = int(rng.integers(0, 2**31))
    if name == "mandelbrot":
        cx, cy = MANDELBROT_CENTRES[int(rng.integers(len(MANDELBROT_CENTRES)))]
        start = float(rng.uniform(0.02, 1.5))
        return {"start_x": cx, "start_y": cy, "start_scale": round(start, 4),
                "end_scale": round(start * float(rng.uniform(0.2, 0.6)), 5), "end_pts": float(duration)}
    if name == "life":
        colours = ["0x%06x" % int(c) for c in rng.integers(0, 2**24, size=3)]
        return {"seed": seed, "cell": int(rng.integers(2, 5)), "ratio": round(float(rng.uniform(0.05, 0.5)), 3),
                "mold": int(rng.integers(0, 40)), "life_color": colours[0], "death_color": colours[1],
                "mold_color": colours[2]}
    if name == "cellauto":
        return {"seed": seed, "cell": int(rng.integers(1, 4)),
                "rule": CELLAUTO_RULES[int(rng.integers(len(CELLAUTO_RULES)))],
                "ratio": round(float(rng.uniform(0.2, 0.8)), 3)}
    if name == "sierpinski":
        return {"seed": seed, "jump": int(rng.integers(1, 20)), "type": ["carpet", "triangle"][int(rng.integers(2))]}
    if name == "gradients":
        return {"seed": seed, "n": int(rng.integers(2, 9)), "speed": round(float(rng.uniform(0.005, 0.05)), 4),
                "type": ["linear", "radial", "circular", "spiral", "square"][int(rng.integers(5))]}
    if name == "perlin":
        return {"seed": seed, "octaves": int(rng.integers(1, 6)), "persistence": round(float(rng.uniform(0.3, 1.0)), 3),
                "xscale": round(float(rng.uniform(0.5, 4.0)), 3), "yscale": round(float(rng.uniform(0.5, 4.0)), 3),
                "tscale": round(float(rng.uniform(0.2, 2.0)), 3)}
    return {}


def _processing_options(processing: str, rng: np.random.Generator, width: int, height: int) -> dict:
    """Random but seeded parameters, wide enough that quality spans most of the MOS scale."""
    if processing == "compression":
        return {"crf": int(rng.integers(30, 52))}
    if processing == "downscale":
        factor = round(float(rng.uniform(0.12, 0.5)), 3)
        return {"factor": factor, "width": max(2, round(width * factor / 2) * 2),
                "height": max(2, round(height * factor / 2) * 2)}
    if processing == "blur":
        return {"sigma": round(float(rng.uniform(0.6, 6.0)), 2)}
    if processing == "noise":
        return {"strength": int(rng.integers(20, 101)), "seed": int(rng.integers(0, 2**31))}
    if processing == "framerate":
        return {"fps": float(rng.choice([2, 3, 5, 6, 10, 15]))}
    if processing == "sharpen":
        return {"amount": round(float(rng.uniform(0.5, 3.0)), 2), "contrast": round(float(rng.uniform(1.0, 1.25)), 3),
                "saturation": round(float(rng.uniform(1.0, 1.4)), 3)}
    raise ValueError(f"unknown processing '{processing}'")


def split_sizes(n_sources: int) -> dict[str, int]:
    """Source groups per split: about 60/20/20, at least one group each, and at least 2 in val from
    4 sources on (rank-pair-val.xlsx needs pairs across val groups for the challenge score)."""
    sizes = {s: max(1, round(n_sources * f)) for s, f in SPLIT_FRACTIONS.items()}
    if n_sources >= 4:
        sizes["val"] = max(2, sizes["val"])
    return {"train": n_sources - sum(sizes.values()), **sizes}


def plan_dataset(params: DemoParams) -> list[SourcePlan]:
    """The whole dataset as a deterministic function of `params`, in file order (train, val, test)."""
    params.validate()
    n = params.sources
    rng = _rng(params.seed, 0)
    pool = PHOTOS + SYNTHETIC
    order = rng.permutation(len(pool))
    contents = [pool[order[i % len(pool)]] for i in range(n)]
    landscape = set(rng.choice(n, size=round(n / 4), replace=False).tolist())
    perm = rng.permutation(n).tolist()
    sizes = split_sizes(n)
    members = {"val": perm[:sizes["val"]], "test": perm[sizes["val"]:sizes["val"] + sizes["test"]],
               "train": perm[sizes["val"] + sizes["test"]:]}
    plans = []
    for split in SPLITS:
        for rank, i in enumerate(sorted(members[split])):
            src_rng = _rng(params.seed, 2, i)
            w, h = (params.height, params.width) if i in landscape else (params.width, params.height)
            name = contents[i]
            if name in PHOTOS:
                content, motion = f"photo:{name}", _photo_motion(src_rng)
            else:
                content, motion = f"lavfi:{name}", _synthetic_motion(name, src_rng, params.duration)
            videos = []
            for d, processing in enumerate(PROCESSINGS):
                options = {"crf": SOURCE_CRF} if d == 0 else _processing_options(processing, src_rng, w, h)
                videos.append(VideoPlan(f"{split}/{rank * len(PROCESSINGS) + d + 1:04d}.mp4", d, processing, options))
            source_mos = round(SOURCE_MOS + float(src_rng.uniform(-SOURCE_MOS_JITTER, SOURCE_MOS_JITTER)), MOS_DECIMALS)
            plans.append(SourcePlan(i, split, content, w, h, motion, source_mos, videos))
    return plans


def vmaf_to_mos(vmaf: float) -> float:
    """Processed-version MOS from its VMAF (see module docstring)."""
    return round(1.0 + MOS_SLOPE * min(max(vmaf, 0.0), 100.0) / 100.0, MOS_DECIMALS)


# ----------------------------------------------------------------------------- ffmpeg

def ffmpeg_exe() -> str:
    """The ffmpeg bundled with imageio-ffmpeg, checked for libx264 and libvmaf."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    filters = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    missing = [n for n, text in (("libx264", encoders), ("libvmaf", filters)) if n not in text]
    if missing:
        raise DemoDatasetError(f"ffmpeg at {exe} lacks {', '.join(missing)}; the demo dataset needs both")
    return exe


def ffmpeg_version(exe: str) -> str:
    out = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def _ffmpeg_base(exe: str) -> list[str]:
    return [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_threads", "1"]


def _encode_args(crf: int, n_frames: int) -> list[str]:
    """Single-threaded, bitexact H.264 yuv420p mp4 of exactly n_frames frames."""
    return ["-an", "-frames:v", str(n_frames), "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(crf),
            "-pix_fmt", "yuv420p", "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact",
            "-flags:v", "+bitexact", "-f", "mp4"]


def run_ffmpeg(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run an ffmpeg command line; a failure raises DemoDatasetError with `what`, the command and stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise DemoDatasetError(f"ffmpeg failed ({what}), exit {proc.returncode}:\n  {' '.join(cmd)}\n"
                               f"{proc.stderr.strip()[-2000:]}")
    return proc


def _lavfi_graph(name: str, w: int, h: int, fps: int, m: dict) -> str:
    common = f"s={w}x{h}:r={fps}"
    if name == "testsrc2":
        return f"testsrc2={common}"
    if name == "mandelbrot":
        return (f"mandelbrot={common}:maxiter=256:start_x={m['start_x']}:start_y={m['start_y']}"
                f":start_scale={m['start_scale']}:end_scale={m['end_scale']}:end_pts={m['end_pts']}")
    if name == "life":
        cw, ch = max(8, w // m["cell"]), max(8, h // m["cell"])
        return (f"life=s={cw}x{ch}:r={fps}:seed={m['seed']}:ratio={m['ratio']}:mold={m['mold']}"
                f":life_color={m['life_color']}:death_color={m['death_color']}:mold_color={m['mold_color']}"
                f",scale=w={w}:h={h}:flags=neighbor")
    if name == "cellauto":
        cw, ch = max(8, w // m["cell"]), max(8, h // m["cell"])
        return (f"cellauto=s={cw}x{ch}:r={fps}:rule={m['rule']}:seed={m['seed']}:ratio={m['ratio']}:scroll=1"
                f",scale=w={w}:h={h}:flags=neighbor")
    if name == "sierpinski":
        return f"sierpinski={common}:seed={m['seed']}:jump={m['jump']}:type={m['type']}"
    if name == "gradients":
        return f"gradients={common}:seed={m['seed']}:n={m['n']}:speed={m['speed']}:type={m['type']}"
    if name == "perlin":
        return (f"perlin={common}:octaves={m['octaves']}:persistence={m['persistence']}:xscale={m['xscale']}"
                f":yscale={m['yscale']}:tscale={m['tscale']}:random_mode=seed:random_seed={m['seed']}")
    raise ValueError(f"unknown lavfi source '{name}'")


def _processing_filter(v: VideoPlan, w: int, h: int, fps: int) -> Optional[str]:
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


# ----------------------------------------------------------------------------- photo clips

def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photograph as uint8 RGB [H, W, 3] (no download)."""
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return img


def _linear_taps(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Left index and right weight of linear interpolation at `coords` (pixel centres at k)."""
    lo = np.clip(np.floor(coords).astype(np.int64), 0, size - 2)
    return lo, np.clip(coords - lo, 0.0, 1.0).astype(np.float32)[:, None]


def photo_frames(img: np.ndarray, width: int, height: int, n_frames: int, motion: dict) -> Iterator[np.ndarray]:
    """Pan/zoom clip over a still image: yields uint8 RGB [height, width, 3] frames.

    The image is resized to cover the frame with a `PHOTO_MARGIN` margin; frame t shows it
    magnified by zoom(t) (linear between motion['zoom']) with its window centre moving
    linearly between the two motion['pan'] positions (fractions of the free range).
    """
    from skimage.transform import resize

    if motion["flip"]:
        img = img[:, ::-1]
    cover = max(width / img.shape[1], height / img.shape[0]) * PHOTO_MARGIN
    bh, bw = max(height + 2, round(img.shape[0] * cover)), max(width + 2, round(img.shape[1] * cover))
    base = resize(img, (bh, bw), order=1, anti_aliasing=cover < 1, preserve_range=True).astype(np.float32)
    (z0, z1), ((ux0, uy0), (ux1, uy1)) = motion["zoom"], motion["pan"]
    xs_out, ys_out = np.arange(width) + 0.5 - width / 2, np.arange(height) + 0.5 - height / 2
    for k in range(n_frames):
        t = k / max(1, n_frames - 1)
        zoom = z0 + (z1 - z0) * t
        win_w, win_h = width / zoom, height / zoom
        cx = win_w / 2 + (ux0 + (ux1 - ux0) * t) * (bw - win_w)
        cy = win_h / 2 + (uy0 + (uy1 - uy0) * t) * (bh - win_h)
        x0, wx = _linear_taps(cx + xs_out / zoom - 0.5, bw)
        y0, wy = _linear_taps(cy + ys_out / zoom - 0.5, bh)
        rows = base[y0[0]:y0[-1] + 2]
        cols = rows[:, x0] * (1.0 - wx) + rows[:, x0 + 1] * wx
        y0 = y0 - y0[0]
        frame = cols[y0] * (1.0 - wy[:, :, None]) + cols[y0 + 1] * wy[:, :, None]
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- one group

def _render_source(exe: str, plan: SourcePlan, params: DemoParams, dst: Path) -> None:
    kind, name = plan.content.split(":", 1)
    encode = _encode_args(SOURCE_CRF, params.n_frames) + [str(dst)]
    if kind == "lavfi":
        graph = _lavfi_graph(name, plan.width, plan.height, params.fps, plan.motion)
        run_ffmpeg(_ffmpeg_base(exe) + ["-f", "lavfi", "-i", graph, "-vf", "format=yuv420p"] + encode,
             f"source {plan.videos[0].filename}")
        return
    cmd = _ffmpeg_base(exe) + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{plan.width}x{plan.height}",
                               "-framerate", str(params.fps), "-i", "-", "-vf", "format=yuv420p"] + encode
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for frame in photo_frames(load_photo(name), plan.width, plan.height, params.n_frames, plan.motion):
            proc.stdin.write(frame.tobytes())
    except BrokenPipeError:
        pass  # ffmpeg stopped reading: its own error is reported below
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    stderr = proc.communicate()[1].decode(errors="replace")
    if proc.returncode != 0:
        raise DemoDatasetError(f"ffmpeg failed (source {plan.videos[0].filename}), exit {proc.returncode}:\n"
                               f"  {' '.join(cmd)}\n{stderr.strip()[-2000:]}")


def _process(exe: str, v: VideoPlan, plan: SourcePlan, params: DemoParams, src: Path, dst: Path) -> None:
    chain = _processing_filter(v, plan.width, plan.height, params.fps)
    crf = v.options["crf"] if v.processing == "compression" else PROCESSED_CRF
    cmd = _ffmpeg_base(exe) + ["-threads", "1", "-i", str(src)] + (["-vf", chain] if chain else [])
    run_ffmpeg(cmd + _encode_args(crf, params.n_frames) + [str(dst)], f"{v.processing} {v.filename}")


def measure_vmaf(exe: str, distorted: Path, reference: Path, n_frames: int) -> float:
    """Pooled (mean) VMAF of `distorted` against `reference`, single-threaded."""
    graph = (f"[0:v]setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];"
             f"[d][r]libvmaf=model=version={VMAF_MODEL}:n_threads=1:log_fmt=json:log_path=vmaf.json")
    with tempfile.TemporaryDirectory(prefix="vmaf-") as tmp:
        run_ffmpeg(_ffmpeg_base(exe) + ["-threads", "1", "-i", str(distorted.resolve()), "-threads", "1",
                                  "-i", str(reference.resolve()), "-lavfi", graph, "-f", "null", "-"],
             f"VMAF of {distorted.name}", cwd=tmp)
        with open(Path(tmp) / "vmaf.json") as f:
            result = json.load(f)
    if len(result["frames"]) != n_frames:
        raise DemoDatasetError(f"VMAF of {distorted} compared {len(result['frames'])} frames, expected {n_frames}")
    return float(result["pooled_metrics"]["vmaf"]["mean"])


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
    def temp_name(v: VideoPlan) -> Path:
        final = root / v.filename
        return final.with_name(f".{final.name}.part")

    src = root / plan.videos[0].filename
    src.parent.mkdir(parents=True, exist_ok=True)
    _render_source(exe, plan, params, temp_name(plan.videos[0]))
    os.replace(temp_name(plan.videos[0]), src)
    vmaf = {}
    for v in plan.videos[1:]:
        _process(exe, v, plan, params, src, temp_name(v))
        os.replace(temp_name(v), root / v.filename)
        vmaf[v.filename] = measure_vmaf(exe, root / v.filename, src, params.n_frames)
    record = {"index": plan.index, "files": [v.filename for v in plan.videos], "vmaf": vmaf}
    atomic_write_text(_group_record_path(root, plan), json.dumps(record, indent=1))
    log.debug("group %d (%s) done: %s", plan.index, plan.content, vmaf)
    return record


# ----------------------------------------------------------------------------- annotations

def _video_records(plans: list[SourcePlan], group_records: dict[int, dict]) -> list[dict]:
    records = []
    for plan in plans:
        vmaf = group_records[plan.index]["vmaf"]
        for v in plan.videos:
            score = vmaf.get(v.filename)
            records.append({"filename": v.filename, "split": plan.split, "cls_label": plan.index,
                            "dis_label": v.dis_label, "processing": v.processing, "options": v.options,
                            "content": plan.content, "motion": plan.motion, "width": plan.width,
                            "height": plan.height, "vmaf": None if score is None else round(score, 6),
                            "mos": plan.source_mos if score is None else vmaf_to_mos(score)})
    return records


def _ordered_pair(a: dict, b: dict, rng: np.random.Generator) -> tuple[str, str, int]:
    if rng.random() < 0.5:
        a, b = b, a
    return a["filename"], b["filename"], 1 if a["mos"] > b["mos"] else 2


def rank_pairs(val: list[dict], seed: int) -> dict[str, list[tuple[str, str, int]]]:
    """Val pairs with different MOS: `source` = every pair inside a group; `nonsource` = a seeded
    sample (as many as `source` has) of the pairs across groups. Rank 1 = first video better."""
    rng = _rng(seed, 1)
    groups: dict[int, list[dict]] = {}
    for r in val:
        groups.setdefault(r["cls_label"], []).append(r)
    within = [(a, b) for g in groups.values() for a, b in combinations(g, 2) if a["mos"] != b["mos"]]
    across = [(a, b) for a, b in combinations(val, 2) if a["cls_label"] != b["cls_label"] and a["mos"] != b["mos"]]
    keep = sorted(rng.choice(len(across), size=min(len(across), len(within)), replace=False).tolist())
    return {"source": [_ordered_pair(a, b, rng) for a, b in within],
            "nonsource": [_ordered_pair(*across[k], rng) for k in keep]}


def _write_csv(path: Path, header: Optional[list[str]], rows: list[list]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def _score_text(mos: float) -> str:
    return f"{mos:.{MOS_DECIMALS}f}"


def write_annotations(root: Path, videos: list[dict], seed: int, layout: str = "demo") -> None:
    """The annotation files of `layout` (see module docstring), atomically, dataset.json excluded."""
    import pandas as pd

    def labeled(path: Path, rows: list[dict]) -> None:
        _write_csv(path, ["filename", "score"], [[r["filename"], _score_text(r["mos"])] for r in rows])

    parts = {split: [r for r in videos if r["split"] == split] for split in SPLITS}
    if layout == "kvq":
        labeled(root / "train_data.csv", parts["train"])
        labeled(root / "val_data.csv", parts["val"])
        _write_csv(root / "test_data.csv", ["filename"], [[r["filename"]] for r in parts["test"]])
    else:
        for split, rows in parts.items():
            labeled(root / f"{split}.csv", rows)
            _write_csv(root / f"{split}_ksvqe.txt", None,
                       [[r["filename"], r["cls_label"], r["dis_label"], _score_text(r["mos"])] for r in rows])
        labeled(root / "truth.csv", parts["val"])
        _write_csv(root / "test_unlabeled.csv", ["filename"], [[r["filename"]] for r in parts["test"]])
    pairs = rank_pairs(parts["val"], seed)
    with atomic_open(root / "rank-pair-val.xlsx", "wb") as f, pd.ExcelWriter(f, engine="openpyxl") as writer:
        for sheet in ("source", "nonsource"):
            pd.DataFrame(pairs[sheet], columns=["video1", "video2", "rank"]).to_excel(writer, sheet_name=sheet, index=False)


# ----------------------------------------------------------------------------- build

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
    DemoDatasetError if `out` holds something else.
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
    for part in root.glob("*/.*.part"):
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
    videos = _video_records(plans, records)
    write_annotations(root, videos, params.seed, layout)
    info = {"generator": "kvq.demo.data", "params": params.as_dict(), "annotation_layout": layout,
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
