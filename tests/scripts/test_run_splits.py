"""scripts/run_splits.py on tiny data (CPU): 2 grouped splits of 1 epoch, outputs, resume."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from datasets.annotations import read_annotations
from kvq.engine import nsplit
from kvq.config import load_config
from tests.media import make_tiny_dataset, simplevqa_config

ROOT = Path(__file__).resolve().parents[2]
N_VIDEOS, GROUP = 12, 3


def load_script():
    spec = importlib.util.spec_from_file_location("run_splits", ROOT / "scripts" / "run_splits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = make_tiny_dataset(tmp_path_factory.mktemp("tiny"), n=N_VIDEOS)
    rows = [r for r in csv.reader(open(root / "train.csv"))][1:]
    (root / "pool.csv").write_text("filename,score,group\n"
                                   + "".join(f"{n},{s},src{i // GROUP}\n" for i, (n, s) in enumerate(rows)))
    return root


def write_config(tmp_path: Path, data: Path, anno: str = "pool.csv", **top) -> Path:
    cfg = simplevqa_config(data, epochs=1, freeze_backbone=True, ema=False, **top)
    cfg["data"] = {"train": cfg["data"]["train"]}
    cfg["data"]["train"]["args"]["anno_file"] = str(data / anno)
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(cfg: Path, out: Path, *extra: str) -> int:
    return load_script().main(["-o", str(cfg), "--gpu_id", "cpu", "--no_progress", "--splits", "2",
                               "--val_frac", "0.25", "--test_frac", "0.25", "--seed", "1", "--out", str(out), *extra])


def test_two_splits_then_resume(data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cfg, out = write_config(tmp_path, data), tmp_path / "runs"
    assert run(cfg, out) == 0
    printed = capsys.readouterr().out
    assert "test SROCC: median" in printed and "±" in printed
    manifest = json.loads((out / "splits.json").read_text())
    assert len(manifest["videos"]) == N_VIDEOS
    for i in range(2):
        split = out / f"split_{i:02d}"
        parts = {p: list(csv.DictReader(open(split / f"{p}.csv"))) for p in ("train", "val", "test")}
        assert {p: len(rows) for p, rows in parts.items()} == {"train": 6, "val": 3, "test": 3}
        owners = {}
        for p, rows in parts.items():
            for row in rows:
                assert owners.setdefault(row["group"], p) == p
        result = json.loads((split / "result.json").read_text())
        assert result["split"] == i and result["epoch"] == 0 and result["selected"] == "model"
        assert all(k in result for k in ("SROCC", "PLCC", "KROCC", "RMSE", "val_SROCC"))
        assert Path(result["checkpoint"]).is_file()
        split_cfg = load_config(split / "config.yml")
        assert split_cfg["data"]["test"]["args"]["anno_file"] == str(split / "test.csv")
        predictions = list(csv.DictReader(open(split / "test_predictions.csv")))
        assert sorted(r["filename"] for r in predictions) == sorted(r["filename"] for r in parts["test"])
    rows = list(csv.reader(open(out / "results.csv")))
    assert rows[0][:2] == ["split", "n_train"] and [r[0] for r in rows[1:]] == ["0", "1", "median", "mean", "std"]
    assert (out / "results_box.png").stat().st_size > 0

    # resume: split 0 finished (skipped); split 1 lost its result after training (scored again, not retrained)
    (out / "split_01" / "result.json").unlink()
    built = []
    real = nsplit.Trainer

    class Counting(real):
        def __init__(self, cfg, opts, *args, **kwargs):
            built.append(opts.resume_from)
            super().__init__(cfg, opts, *args, **kwargs)

    monkeypatch.setattr(nsplit, "Trainer", Counting)
    assert run(cfg, out) == 0
    assert len(built) == 1 and built[0] is not None and built[0].name.endswith("_last.pth")
    assert (out / "split_01" / "result.json").is_file()
    # interrupted before its first training state: the split's best checkpoints do not stop a restart
    (out / "split_01" / "result.json").unlink()
    next((out / "split_01" / "checkpoint").glob("*_last.pth")).unlink()
    assert run(cfg, out) == 0 and built[-1] is None
    with pytest.raises(nsplit.SplitsError, match="another seed"):
        run(cfg, out, "--seed", "2")


def test_keep_last_scores_the_final_epoch(data: Path, tmp_path: Path) -> None:
    """keep: last: each split's test part is scored with the weights after the final epoch."""
    import torch

    cfg, out = write_config(tmp_path, data, num_epochs=3, keep="last"), tmp_path / "runs"
    assert run(cfg, out, "--splits", "1") == 0
    result = json.loads((out / "split_00" / "result.json").read_text())
    assert result["epoch"] == 2
    assert torch.load(result["checkpoint"], weights_only=False)["epoch"] == 2


def test_groups_are_required(data: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, data, anno="train.csv"))
    pool = nsplit.pool_records(cfg)
    with pytest.raises(nsplit.SplitsError, match=r"12 of 12 videos have no group .*line 2: v0.mp4"):
        nsplit.group_keys(pool, "group")
    assert nsplit.group_keys(pool, "none")[:2] == ["v0.mp4", "v1.mp4"]


def test_pool_needs_one_prefix_and_labels(data: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(write_config(tmp_path, data).read_text())
    other = {"type": raw["data"]["train"]["type"], "args": {**raw["data"]["train"]["args"], "phase": "test",
                                                             "anno_file": str(data / "unlabeled.csv")}}
    raw["data"]["test"] = other
    path = tmp_path / "u.yml"
    path.write_text(yaml.safe_dump(raw))
    assert len(nsplit.pool_records(load_config(path)).records) == N_VIDEOS  # the unlabelled list is left out
    raw["data"]["val"] = {"type": other["type"], "args": {**other["args"], "anno_file": str(data / "val.csv"),
                                                         "data_prefix": str(data / "elsewhere")}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(Exception, match="different data_prefix|do not exist"):
        nsplit.pool_records(load_config(path))


def test_parts_too_small(data: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, data)
    for extra, message in ((["--group_by", "none"], "fewer than 3 videos"), ([], "4 groups are too few")):
        with pytest.raises(nsplit.SplitsError, match=message):
            load_script().main(["-o", str(cfg), "--gpu_id", "cpu", "--splits", "1", "--val_frac", "0.1",
                                "--test_frac", "0.25", "--out", str(tmp_path / "o"), *extra])


def test_torchrun_two_processes(data: Path, tmp_path: Path) -> None:
    """Under torchrun each split trains with DDP (gloo on the CPU); rank 0 alone scores and writes."""
    import os
    import subprocess
    import sys

    cfg, out = write_config(tmp_path, data), tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29527",
                           str(ROOT / "scripts" / "run_splits.py"), "-o", str(cfg), "--gpu_id", "cpu", "--no_progress",
                           "--splits", "1", "--val_frac", "0.25", "--test_frac", "0.25", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "split_00" / "result.json").read_text())
    assert result["n_test"] == 3 and "SROCC" in result
    logs = list((out / "log").glob("*.log"))
    assert len(logs) == 1 and "world size 2" in logs[0].read_text()  # rank 0 alone writes the log
    assert proc.stdout.count("test SROCC: median") == 1


def test_ksvqe_lists_group_by_cls_label_and_keep_their_format(data: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, data, anno="ksvqe.txt"))
    pool = nsplit.pool_records(cfg)
    assert pool.fmt == "ksvqe"
    groups = nsplit.group_keys(pool, "cls_label")
    assert set(groups) == {"0"}  # make_tiny_dataset gives every video cls_label 0
    with pytest.raises(nsplit.SplitsError, match="--group-by cls_label needs ksvqe lists"):
        nsplit.group_keys(nsplit.pool_records(load_config(write_config(tmp_path, data))), "cls_label")
    part = nsplit.write_part(tmp_path / "p.txt", pool.records[:3], pool.fmt, groups[:3])
    files = {p: part for p in ("train", "val", "test")}
    split_cfg = nsplit.split_config(cfg, files, pool.fmt, 0)
    assert split_cfg["data"]["val"]["args"]["phase"] == "test"
    again = read_annotations(part, data, "ksvqe")
    assert [(r.video_name, r.cls_label, r.dis_label, r.label) for r in again] == [
        (r.video_name, r.cls_label, r.dis_label, r.label) for r in pool.records[:3]]


def test_walkthrough_on_a_tiny_demo_build(tmp_path: Path, capsys) -> None:
    """README "Train on your own dataset" at tiny scale: demo dataset -> convert_annotations.py
    (groups inferred from the KVQ naming) -> run_splits.py with config/demo_splits.yml: 2 splits,
    2 epochs on cached EfficientNet-Lite0 features, every source group in exactly one part."""
    from kvq.demo.build import build_dataset
    from kvq.demo.plan import DemoParams

    data = tmp_path / "data"
    build_dataset(data, DemoParams(sources=3, seed=7, duration=1.0, width=64, height=112))
    spec = importlib.util.spec_from_file_location("convert_annotations", ROOT / "scripts" / "convert_annotations.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    assert convert.main(["--format", "kvq", *(str(data / f"{s}.csv") for s in ("train", "val", "test")),
                         str(data / "all.csv")]) == 0
    assert "21 videos in 3 groups" in capsys.readouterr().out
    sets = [f"data.train.args.anno_file={data / 'all.csv'}", f"data.train.args.data_prefix={data}",
            "num_epochs=2", "num_workers=0"]
    out = tmp_path / "splits"
    args = ["-o", str(ROOT / "config" / "demo_splits.yml"), "--gpu_id", "cpu", "--no_progress", "--splits", "2",
            "--val_frac", "0.34", "--test_frac", "0.33", "--out", str(out)]
    assert load_script().main(args + [a for s in sets for a in ("--set", s)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["split"] for r in rows[:2]] == ["0", "1"]
    for i in range(2):
        groups = {p: {r["group"] for r in csv.DictReader(open(out / f"split_{i:02d}" / f"{p}.csv"))}
                  for p in ("train", "val", "test")}
        assert all(groups.values()) and not (groups["train"] & groups["val"] or groups["train"] & groups["test"]
                                             or groups["val"] & groups["test"])
