"""The demo dataset's annotation files (layouts `demo` and `kvq`, see kvq/demo/build.py) and val
rank pairs.

The csv files are written here, not with datasets.converters.write_annotation_csv: that writer's
`filename,score,group` columns and `.10g` scores are not the layouts' `filename,score` (the KVQ
release's header) with `MOS_DECIMALS` fixed decimals."""
from __future__ import annotations

import csv
from itertools import combinations
from pathlib import Path
from typing import Optional

import numpy as np

from kvq.core.io import atomic_open
from kvq.demo.plan import MOS_DECIMALS, SPLITS, SourcePlan, seeded_rng, vmaf_to_mos

ANNOTATION_FILES = ("train.csv", "val.csv", "test.csv", "train_ksvqe.txt", "val_ksvqe.txt", "test_ksvqe.txt",
                    "truth.csv", "rank-pair-val.xlsx", "test_unlabeled.csv")
KVQ_ANNOTATION_FILES = ("train_data.csv", "val_data.csv", "test_data.csv", "rank-pair-val.xlsx")
LAYOUTS = {"demo": ANNOTATION_FILES, "kvq": KVQ_ANNOTATION_FILES}  # layout -> annotation files it writes


def video_records(plans: list[SourcePlan], group_records: dict[int, dict]) -> list[dict]:
    """One dataset.json record per video, in file order, with its VMAF and MOS."""
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
    rng = seeded_rng(seed, 1)
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
    """The annotation files of `layout` (see LAYOUTS), atomically, dataset.json excluded."""
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
