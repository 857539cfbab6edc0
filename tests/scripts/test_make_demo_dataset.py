"""The demo dataset generator on a tiny build (3 sources, 1 s, 64x112): files, labels, splits,
rank pairs, determinism, resume and refusal to overwrite."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from kvq.demo import build
from kvq.demo.annotations import ANNOTATION_FILES, KVQ_ANNOTATION_FILES, write_annotations
from kvq.demo.build import DemoDatasetError, build_dataset
from kvq.demo.plan import PROCESSINGS, DemoParams, split_sizes

ROOT = Path(__file__).resolve().parents[2]
TINY = DemoParams(sources=3, seed=7, duration=1.0, width=64, height=112)
ANNOTATIONS = ("train.csv", "val.csv", "test.csv", "train_ksvqe.txt", "val_ksvqe.txt", "test_ksvqe.txt",
               "truth.csv", "test_unlabeled.csv")


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _digest(root: Path) -> dict[str, str]:
    """md5 of every video and text annotation (the xlsx holds timestamps; compared as data)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".mp4" or p.name in ANNOTATIONS))
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "ds"
    summary = build_dataset(root, TINY)
    assert not summary.noop and len(summary.videos) == TINY.sources * len(PROCESSINGS)
    return root


def test_files_and_columns(built: Path) -> None:
    info = json.loads((built / "dataset.json").read_text())
    assert info["params"] == TINY.as_dict()
    assert not (built / ".build").exists()
    assert set(ANNOTATION_FILES) <= set(info["files"])
    assert sorted(info["files"]) == sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file()
                                           and p.name != "dataset.json")
    for split in ("train", "val", "test"):
        rows = _rows(built / f"{split}.csv")
        assert rows[0] == ["filename", "score"] and len(rows) > 1
        assert all(r[0].startswith(f"{split}/") and r[0].endswith(".mp4") for r in rows[1:])
        ksvqe = _rows(built / f"{split}_ksvqe.txt")
        assert [r[0] for r in ksvqe] == [r[0] for r in rows[1:]]
        assert all(len(r) == 4 for r in ksvqe)
        assert [r[3] for r in ksvqe] == [r[1] for r in rows[1:]]
    assert _rows(built / "truth.csv") == _rows(built / "val.csv")
    unlabeled = _rows(built / "test_unlabeled.csv")
    assert unlabeled[0] == ["filename"] and [r[0] for r in unlabeled[1:]] == [r[0] for r in _rows(built / "test.csv")[1:]]


def test_readable_by_annotation_reader(built: Path) -> None:
    annotations = pytest.importorskip("datasets.annotations")
    csv_recs = annotations.read_annotations(built / "train.csv", built)
    ksvqe_recs = annotations.read_annotations(built / "train_ksvqe.txt", built)
    assert annotations.detect_format(built / "train_ksvqe.txt") == "ksvqe"
    assert [r.label for r in csv_recs] == [r.label for r in ksvqe_recs]
    assert [r.dis_label for r in ksvqe_recs] == list(range(len(PROCESSINGS))) * (len(ksvqe_recs) // len(PROCESSINGS))
    assert all(r.label is None for r in annotations.read_annotations(built / "test_unlabeled.csv", built))


def test_videos_are_h264_yuv420p_at_source_size(built: Path) -> None:
    av = pytest.importorskip("av")
    info = json.loads((built / "dataset.json").read_text())
    for v in info["videos"]:
        with av.open(str(built / v["filename"])) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            assert (stream.codec_context.name, stream.codec_context.format.name) == ("h264", "yuv420p")
            assert (stream.codec_context.width, stream.codec_context.height) == (v["width"], v["height"])
            assert frames == TINY.n_frames
            assert float(stream.average_rate) == TINY.fps


def test_groups_labels_and_splits(built: Path) -> None:
    groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
    split_of: dict[int, set[str]] = defaultdict(set)
    order = []
    for split in ("train", "val", "test"):
        for name, cls_label, dis_label, score in _rows(built / f"{split}_ksvqe.txt"):
            groups[int(cls_label)].append((int(dis_label), float(score)))
            split_of[int(cls_label)].add(split)
            order.append(int(dis_label))
    assert all(len(s) == 1 for s in split_of.values()), "a source group spans two splits"
    assert {next(iter(s)) for s in split_of.values()} == {"train", "val", "test"}
    assert order == list(range(len(PROCESSINGS))) * TINY.sources, "groups are not 7 consecutive files, source first"
    scores = [s for g in groups.values() for _, s in g]
    assert all(1.0 <= s <= 5.0 for s in scores)
    margins = [g[0][1] - sum(s for _, s in g[1:]) / (len(g) - 1) for g in groups.values()]
    assert sum(margins) / len(margins) > 0, "sources are not the best of their group on average"


def test_rank_pairs_consistent_with_mos(built: Path) -> None:
    pd = pytest.importorskip("pandas")
    mos = {r[0]: float(r[1]) for r in _rows(built / "val.csv")[1:]}
    group = {r[0]: int(r[1]) for r in _rows(built / "val_ksvqe.txt")}
    sheets = pd.read_excel(built / "rank-pair-val.xlsx", sheet_name=None)
    assert set(sheets) == {"source", "nonsource"}
    for name, df in sheets.items():
        assert list(df.columns) == ["video1", "video2", "rank"]
        for v1, v2, rank in df.itertuples(index=False):
            assert v1 in mos and v2 in mos and mos[v1] != mos[v2]
            assert rank == (1 if mos[v1] > mos[v2] else 2)
            assert (group[v1] == group[v2]) == (name == "source")
    assert len(sheets["source"]) > 0


def test_same_seed_same_dataset_and_rerun_is_noop(built: Path, tmp_path: Path) -> None:
    other = tmp_path / "again"
    build_dataset(other, TINY)
    assert _digest(other) == _digest(built)
    pd = pytest.importorskip("pandas")
    a = pd.read_excel(built / "rank-pair-val.xlsx", sheet_name=None)
    b = pd.read_excel(other / "rank-pair-val.xlsx", sheet_name=None)
    assert all(a[k].equals(b[k]) for k in a)
    before = {p: p.stat().st_mtime_ns for p in other.rglob("*")}
    assert build_dataset(other, TINY).noop
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*")} == before


def test_refuses_different_params_and_foreign_folders(built: Path, tmp_path: Path) -> None:
    with pytest.raises(DemoDatasetError, match="different parameters.*seed"):
        build_dataset(built, replace(TINY, seed=TINY.seed + 1))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DemoDatasetError, match="not empty"):
        build_dataset(foreign, TINY)
    with pytest.raises(ValueError, match="sources"):
        build_dataset(tmp_path / "few", DemoParams(sources=2))


def test_interrupted_build_resumes(built: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "resumed"
    real = build._build_group
    calls = []

    def fail_after_first(exe, out, plan, params):
        calls.append(plan.index)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(exe, out, plan, params)

    monkeypatch.setattr(build, "_build_group", fail_after_first)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(root, TINY, workers=1)
    assert not (root / "dataset.json").exists()
    with pytest.raises(DemoDatasetError, match="interrupted"):
        build_dataset(root, replace(TINY, duration=2.0))
    monkeypatch.setattr(build, "_build_group", real)
    summary = build_dataset(root, TINY)
    assert summary.resumed_groups == 1 and not summary.noop
    assert _digest(root) == _digest(built)


def test_cli(built: Path, tmp_path: Path, capsys, caplog) -> None:
    spec = importlib.util.spec_from_file_location("make_demo_dataset", ROOT / "scripts" / "make_demo_dataset.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = ["--sources", "3", "--seed", "7", "--duration", "1", "--size", "64x112"]
    assert cli.main(["--out", str(built)] + args) == 0
    out = capsys.readouterr().out
    assert "already complete" in out and "val  : 1 source groups, 7 videos" in out
    assert cli.main(["--out", str(built)] + args[:-1] + ["96x160"]) == 2
    assert "refusing to overwrite" in caplog.text
    with pytest.raises(SystemExit):
        cli.parse_args(["--out", str(tmp_path), "--size", "big"])


def test_kvq_layout_writes_the_release_names(built: Path, tmp_path: Path) -> None:
    """--layout kvq: train_data.csv / val_data.csv labelled, test_data.csv unlabelled (header
    `filename`), the val pair sheet; no KSVQE lists. A folder of the other layout is refused."""
    videos = json.loads((built / "dataset.json").read_text())["videos"]
    write_annotations(tmp_path, videos, TINY.seed, layout="kvq")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(KVQ_ANNOTATION_FILES)
    assert _rows(tmp_path / "train_data.csv") == _rows(built / "train.csv")
    assert _rows(tmp_path / "val_data.csv") == _rows(built / "val.csv")
    assert _rows(tmp_path / "test_data.csv") == _rows(built / "test_unlabeled.csv")
    assert (tmp_path / "rank-pair-val.xlsx").read_bytes()[:2] == b"PK"
    with pytest.raises(DemoDatasetError, match="'demo' layout, not 'kvq'"):
        build_dataset(built, TINY, layout="kvq")


def test_converted_ksvqe_lists_equal_the_demo_lists(built: Path, tmp_path: Path) -> None:
    """scripts/convert_annotations.py --output_format ksvqe on the demo's csvs gives its KSVQE lists:
    the same dis_label and the same groups (cls_label numbers them in file order)."""
    from datasets.converters import convert, write_ksvqe_list

    for split in ("train", "val", "test"):
        made = _rows(write_ksvqe_list(tmp_path / f"{split}.txt", convert("kvq", [built / f"{split}.csv"]).rows))
        demo = _rows(built / f"{split}_ksvqe.txt")
        assert [(r[0], r[2], float(r[3])) for r in made] == [(r[0], r[2], float(r[3])) for r in demo]
        pairs = {(m[1], d[1]) for m, d in zip(made, demo)}
        assert len(pairs) == len({m for m, _ in pairs}) == len({d for _, d in pairs})


def test_val_has_two_groups_from_four_sources() -> None:
    """The challenge score needs val pairs across groups (sheet nonsource): 2 val groups from 4
    sources on; the default 24-source build keeps its 14/5/5 split."""
    assert split_sizes(3) == {"train": 1, "val": 1, "test": 1}
    assert split_sizes(4) == {"train": 1, "val": 2, "test": 1}
    assert split_sizes(24) == {"train": 14, "val": 5, "test": 5}
