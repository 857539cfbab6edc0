"""The demo dataset's plan: its parameters, and every source group and video as a deterministic
function of them (content, motion, processing options, split); the MOS mapping.

Labels (MOS on 1..5): a processed version gets `1 + MOS_SLOPE * clip(VMAF, 0, 100) / 100`
(VMAF of the version against its source, mean over frames), i.e. 1..4.6; a source gets
`SOURCE_MOS` +- uniform `SOURCE_MOS_JITTER` (4.4..4.6), so a version only reaches its source's
score when VMAF is near 100. Scores are rounded to 6 decimals. The VMAF model is libvmaf's
built-in `vmaf_v0.6.1neg` ("no enhancement gain"): the plain model scores sharpening at 100
(it rewards enhancement), the NEG model scores it below the source like any other change.
Versions other than `compression` are encoded at CRF `PROCESSED_CRF` so that their named
processing dominates; noise is temporal luma noise.

Determinism: every random choice comes from numpy generators seeded by `seed` (`seeded_rng`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kvq.demo.ffmpeg import VMAF_MODEL

GENERATOR_VERSION = "1"
SOURCE_CRF = 12
PROCESSED_CRF = 18
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



def seeded_rng(seed: int, *key: int) -> np.random.Generator:
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
    rng = seeded_rng(params.seed, 0)
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
            src_rng = seeded_rng(params.seed, 2, i)
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
