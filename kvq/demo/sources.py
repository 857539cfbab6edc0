"""Source clips of the demo dataset: ffmpeg lavfi generators and pan/zoom clips over
scikit-image's bundled photographs (nothing is downloaded)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from kvq.demo.ffmpeg import make_clip
from kvq.demo.plan import PHOTO_MARGIN, SOURCE_CRF, DemoParams, SourcePlan


def lavfi_graph(name: str, w: int, h: int, fps: int, m: dict) -> str:
    """The lavfi graph of generator `name` at WxH and `fps` with motion parameters `m`."""
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


def render_source(exe: str, plan: SourcePlan, params: DemoParams, dst: Path) -> Path:
    """Encode the group's source clip (a lavfi graph or a photo's pan/zoom) at `dst`."""
    kind, name = plan.content.split(":", 1)
    if kind == "lavfi":
        source = lavfi_graph(name, plan.width, plan.height, params.fps, plan.motion)
    else:
        source = photo_frames(load_photo(name), plan.width, plan.height, params.n_frames, plan.motion)
    return make_clip(dst, source, params.n_frames, rate=params.fps, crf=SOURCE_CRF, exe=exe)
