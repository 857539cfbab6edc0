"""Tiny test videos made with kvq.demo.ffmpeg.make_clip (imageio-ffmpeg's ffmpeg binary)."""
from __future__ import annotations

from pathlib import Path

from kvq.demo.ffmpeg import make_clip


def make_video(path: Path, size: str = "64x96", frames: int = 40, rate: int = 30, source: str = "testsrc2",
               extra: tuple = ()) -> Path:
    """`frames` frames of a lavfi source (WxH, or a whole graph when `source` has '='); see make_clip."""
    graph = f"{source}=size={size}:rate={rate}" if "=" not in source else source
    return make_clip(path, graph, frames, options=tuple(extra))


SOURCES = ("testsrc2", "mandelbrot", "testsrc", "rgbtestsrc", "smptebars", "life")


def make_tiny_dataset(root: Path, n: int = 6, frames: int = 20, features: bool = True) -> Path:
    """2n small videos with labels 1..4 and random SlowFast feature files, for end-to-end tests:
    train.csv and ksvqe.txt list v0..v<n-1>; val.csv and val_ksvqe.txt other videos w0..w<n-1>
    (labels reversed), unlabeled.csv every other w video (no video of train is in val or test)."""
    import numpy as np

    from datasets.features import write_random_features

    rng = np.random.default_rng(0)
    rows, val_rows = [], []
    for i in range(n):
        label = 1 + 3 * i / max(n - 1, 1)
        lap = 4 * (i // len(SOURCES))  # more videos than sources: longer clips, so that no two are equal
        for prefix, count, out in (("v", frames + lap, rows), ("w", frames + lap + 2, val_rows)):
            name = f"{prefix}{i}.mp4"
            make_video(root / name, size="64x96", frames=count, source=SOURCES[i % len(SOURCES)])
            if features:
                write_random_features(root / "feat", [name], rng)
            out.append((name, label))
    (root / "train.csv").write_text("filename,score\n" + "".join(f"{a},{b:.3f}\n" for a, b in rows))
    (root / "val.csv").write_text("filename,score\n" + "".join(f"{a},{b:.3f}\n" for a, b in val_rows[::-1]))
    (root / "unlabeled.csv").write_text("filename\n" + "".join(f"{a}\n" for a, _ in val_rows[::2]))
    (root / "ksvqe.txt").write_text("".join(f"{a},0,{i % 3},{b:.3f}\n" for i, (a, b) in enumerate(rows)))
    (root / "val_ksvqe.txt").write_text("".join(f"{a},0,{i % 3},{b:.3f}\n" for i, (a, b) in enumerate(val_rows)))
    return root


def simplevqa_config(root: Path, epochs: int = 1, **top) -> dict:
    """A tiny SimpleVQA config over make_tiny_dataset(root)."""
    view = {"resize": 72, "crop": 64, "clip_len": 4, "frame_interval": 2, "t_frag": 4, "num_clips": 1}

    def split(anno: str, phase: str) -> dict:
        return {"type": "ViewDecompositionDataset_add_forSimpleVQA",
                "args": {"phase": phase, "anno_file": str(root / anno), "data_prefix": str(root),
                         "data_prefix_3D": str(root / "feat"), "sample_types": {"simpleVQA": dict(view)}}}

    return {"name": "tiny", "num_epochs": epochs, "warmup_epochs": 0.5, "batch_size": 3, "num_workers": 0,
            "ema_decay": 0.5, **top,
            "data": {"train": split("train.csv", "train"), "val": split("val.csv", "test"),
                     "test": split("unlabeled.csv", "test")},
            "model": {"type": "simpleVQA", "args": {"simpleVQA": {"backbone": {"pretrained": False}}}},
            "optimizer": {"lr": 1e-3}}


def ksvqe_config(root: Path, epochs: int = 1, **top) -> dict:
    """A small KSVQE config (random init, T=8 clips; 2 clips per video at validation/test)."""
    def split(phase: str, num_clips: int, anno: str = "ksvqe.txt") -> dict:
        view = {"fragments_h": 9, "fragments_w": 9, "fsize_h": 32, "fsize_w": 32, "size_h": 112, "size_w": 112,
                "aligned": 8, "clip_len": 8, "frame_interval": 2, "num_clips": num_clips}
        return {"type": "ViewDecompositionDataset_KVQ",
                "args": {"phase": phase, "anno_file": str(root / anno), "data_prefix": str(root),
                         "sample_types": {"technical": view}}}

    backbone = {"pretrained": False, "checkpoint": True, "num_samples": 1, "sample_type": "topkpertubation",
                "CLIP_location": 8, "cls_use": True, "tuning_stage": 1, "a1": 1, "a2": 2, "frozen_stages": -1}
    return {"name": "tinyKSVQE", "num_epochs": epochs, "warmup_epochs": 0, "batch_size": 2, "num_workers": 0,
            "ema": False, **top,
            "data": {"train": split("train", 1), "val": split("test", 2, "val_ksvqe.txt"),
                     "test": split("test", 2, "unlabeled.csv")},
            "model": {"type": "KSVQE", "args": {"KSVQE": {"backbone": backbone, "head": {}}}},
            "optimizer": {"lr": 1e-4}, "loss": {"plcc": 1.0, "contrastive": 0.3}}


def make_mixed_orientation_dataset(root: Path, frames: int = 8) -> Path:
    """Two portrait (48x64, WxH) and two landscape (64x48) videos in train.csv (labels 1..4, one
    batch of 4 holds both orientations) and four others in val.csv."""
    for split, names in (("train", ("p0", "l0", "p1", "l1")), ("val", ("vp0", "vl0", "vp1", "vl1"))):
        for i, name in enumerate(names):
            size = "48x64" if "p" in name else "64x48"
            make_video(root / f"{name}.mp4", size=size, frames=frames, source=SOURCES[i + (split == "val")])
        rows = "".join(f"{name}.mp4,{i + 1}\n" for i, name in enumerate(names))
        (root / f"{split}.csv").write_text("filename,score\n" + rows)
    return root


def native_size_config(root: Path, epochs: int = 1, **top) -> dict:
    """simplevqa_config over make_mixed_orientation_dataset(root), with the demo's native-size view
    (resize: null: frames at their own size) and a random EfficientNet-Lite0 without SlowFast features."""
    cfg = simplevqa_config(root, epochs, **top)
    for split in cfg["data"].values():
        split["args"].update(data_prefix_3D=None, normalization="inception")
        split["args"]["sample_types"]["simpleVQA"].update(resize=None, crop=None)
    cfg["data"]["test"]["args"]["anno_file"] = str(root / "val.csv")
    cfg["model"]["args"]["simpleVQA"]["backbone"] = {"spatial": "tf_efficientnet_lite0", "pretrained": False,
                                                      "stages": [0, 1, 2, 3], "motion_channels": 0}
    return cfg
