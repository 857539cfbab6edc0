"""test.py: prediction CSV for labeled and unlabeled annotation files."""
import csv
import json
from pathlib import Path

import pytest
import yaml

import test as test_script
import train
from tests.media import make_tiny_dataset, simplevqa_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    data = make_tiny_dataset(root / "data")
    cfg = root / "c.yml"
    cfg.write_text(yaml.safe_dump(simplevqa_config(data, epochs=1, ema=False)))
    assert train.main(["-o", str(cfg), "-r", str(root / "out"), "--log_dir", str(root / "log"),
                       "--gpu_id", "cpu", "--no_progress"]) == 0
    return cfg, root / "out" / "tiny_head_val-ltest_n_finetuned.pth"


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_unlabeled_split_writes_every_video_in_order(trained, tmp_path: Path) -> None:
    cfg, ckpt = trained
    out = tmp_path / "prediction.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--output", str(out), "--no_progress"]) == 0
    rows = read_csv(out)
    assert rows[0] == ["filename", "score"]
    assert [r[0] for r in rows[1:]] == ["v0.mp4", "v2.mp4", "v4.mp4"]
    assert all(float(r[1]) == float(r[1]) for r in rows[1:])


def test_labeled_split_prints_metrics_and_is_deterministic(trained, tmp_path: Path, capsys) -> None:
    cfg, ckpt = trained
    args = ["-o", str(cfg), "--checkpoint", str(ckpt), "--split", "val", "--no_progress"]
    assert test_script.main(args + ["--output", str(tmp_path / "a.csv"), "--plot", str(tmp_path / "s.png")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) == {"SROCC", "PLCC", "KROCC", "RMSE"}
    assert (tmp_path / "s.png").stat().st_size > 0
    assert test_script.main(args + ["--output", str(tmp_path / "b.csv")]) == 0
    assert read_csv(tmp_path / "a.csv") == read_csv(tmp_path / "b.csv")


def test_no_checkpoint_is_a_clear_error(trained, tmp_path: Path) -> None:
    cfg, _ = trained
    with pytest.raises(FileNotFoundError, match="no checkpoint to score with"):
        test_script.main(["-o", str(cfg), "--output", str(tmp_path / "p.csv")])
