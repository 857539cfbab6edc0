"""Preflight: every file a command reads is checked before any work, all problems in one error
with the command that fixes each."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import train
from datasets.features import write_random_features
from kvq.cli import run_main
from kvq.config import load_config
from kvq.engine.preflight import PreflightError, check_pool, check_scoring, check_training
from tests.media import make_video, simplevqa_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """9 videos: train.csv v0-v2 (features made), val.csv v3-v5 (features not made), test.csv
    v3-v5 unlabeled, val_ok.csv v6-v8 (features made)."""
    root = tmp_path_factory.mktemp("pre")
    for i in range(9):
        make_video(root / f"v{i}.mp4", size="64x96", frames=12 + i)  # distinct videos (same content = same video)
    write_random_features(root / "feat" / "kvq", [f"v{i}.mp4" for i in (0, 1, 2, 6, 7, 8)], np.random.default_rng(0))
    (root / "val_ok.csv").write_text("filename,score\n" + "".join(f"v{i}.mp4,{i - 5}\n" for i in range(6, 9)))
    (root / "train.csv").write_text("filename,score\n" + "".join(f"v{i}.mp4,{1 + i}\n" for i in range(3)))
    (root / "val.csv").write_text("filename,score\n" + "".join(f"v{i}.mp4,{i - 2}\n" for i in range(3, 6)))
    (root / "test.csv").write_text("filename\n" + "".join(f"v{i}.mp4\n" for i in range(3, 6)))
    return root


def config(data: Path, tmp_path: Path, **changes) -> Path:
    cfg = simplevqa_config(data, epochs=1, ema=False)
    for split, anno in (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv")):
        cfg["data"][split]["args"].update(anno_file=str(data / anno), data_prefix_3D=str(data / "feat" / "kvq"))
    for key, value in changes.items():
        node = cfg
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_features_of_train_only_fail_at_start_with_the_command(data: Path, tmp_path: Path) -> None:
    """The issue's case: features made for train_data.csv only; training used to crash after
    epoch 1 at the first val video. Now: one error naming the val csv and the command, exit 2,
    before any training step (no checkpoint, no log of an epoch)."""
    out = tmp_path / "out"
    argv = ["-o", str(config(data, tmp_path)), "-r", str(out), "--log_dir", str(tmp_path / "log"), "--gpu_id", "cpu",
            "--no_progress"]
    with pytest.raises(PreflightError) as err:
        train.main(argv)
    text = str(err.value)
    assert "1 problem(s)" in text and f"data.val ({data / 'val.csv'})" in text
    assert "SlowFast features missing for 3 of 3 videos" in text
    assert (f"python SlowFast_features.py --video_root {data} --video_csv {data / 'val.csv'} "
            f"--feature_save_folder {data / 'feat'} --database kvq") in text
    assert not out.exists() or not any(out.rglob("*.pth"))
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda _: train.main(argv))
    assert exit_.value.code == 2


def test_missing_video_weight_and_labels_reported_together(data: Path, tmp_path: Path, isolated_weight_dirs) -> None:
    shutil.copy(data / "train.csv", tmp_path / "train.csv")
    with open(tmp_path / "train.csv", "a") as f:
        f.write("gone.mp4,2\n")
    cfg = load_config(config(data, tmp_path, **{"data.train.args.anno_file": str(tmp_path / "train.csv"),
                                                "data.val.args.anno_file": str(data / "test.csv"),
                                                "model.args.simpleVQA.backbone.pretrained": True}))
    with pytest.raises(PreflightError) as err:
        check_training(cfg)
    text = str(err.value)
    assert "problem(s) found before any work" in text
    assert f"1 of 4 video files do not exist under data_prefix '{data}': {data / 'gone.mp4'}" in text
    assert f"data.val ({data / 'test.csv'}): 3 of 3 videos have no score" in text
    assert "pretrained weights 'resnet50-0676ba61.pth'" in text and "pretrained: false" in text
    assert "SlowFast features missing for 3 of 3 videos" in text  # test.csv's videos have none either
    assert len([line for line in text.splitlines() if line.lstrip()[:2] in {"1.", "2.", "3.", "4.", "5."}]) == 5


def test_scoring_some_features_missing_is_a_warning_all_missing_an_error(data: Path, tmp_path: Path,
                                                                         caplog) -> None:
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"x")
    cfg = load_config(config(data, tmp_path))
    with pytest.raises(PreflightError, match=r"data.test .*missing for 3 of 3 videos.*--video_csv \S*test.csv"):
        check_scoring(cfg, "test", str(ckpt))
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("filename\nv0.mp4\nv4.mp4\n")
    cfg = load_config(config(data, tmp_path, **{"data.test.args.anno_file": str(mixed)}))
    with caplog.at_level(logging.WARNING):
        check_scoring(cfg, "test", str(ckpt))  # v4 is reported when scored; v0 is scored
    assert "features missing for 1 of 2 videos" in caplog.text
    with pytest.raises(PreflightError, match="checkpoint '.*nothing.pth' does not exist"):
        check_scoring(cfg, "test", str(tmp_path / "nothing.pth"))


def test_pool_checks_the_labelled_lists_only(data: Path, tmp_path: Path) -> None:
    cfg = load_config(config(data, tmp_path))
    with pytest.raises(PreflightError) as err:  # val is pooled and has no features; test.csv is unlabelled
        check_pool(cfg)
    assert "data.val" in str(err.value) and "data.test" not in str(err.value)
    cfg = load_config(config(data, tmp_path, **{"data.val.args.anno_file": str(data / "val_ok.csv")}))
    check_pool(cfg)
    cfg = load_config(config(data, tmp_path, **{"data.val.args.anno_file": str(data / "train.csv")}))
    with pytest.raises(PreflightError, match=r"(?s)1 problem.*'v0.mp4' \(data.val: .*is the same video as 'v0.mp4'"):
        check_pool(cfg)  # a video pooled twice


def _rank(rank: int, store: str, data: str, tmp: str, results: str) -> None:
    import torch.distributed as dist

    from kvq.core.distributed import DistInfo

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:  # rank 1 alone lacks a file (e.g. a node-local copy): both ranks must stop, none may hang
        anno = "val.csv" if rank == 1 else "val_ok.csv"
        cfg = load_config(config(Path(data), Path(tmp) / str(rank),
                                 **{"data.val.args.anno_file": str(Path(data) / anno)}))
        try:
            check_training(cfg, DistInfo(rank, 2))
            outcome = "passed"
        except PreflightError as e:
            outcome = str(e)
        Path(results, f"{rank}.txt").write_text(outcome)
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_agree_when_one_rank_fails(data: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    for r in ("0", "1"):
        (tmp_path / r).mkdir()
    mp.spawn(_rank, args=(str(tmp_path / "store"), str(data), str(tmp_path), str(tmp_path)), nprocs=2, join=True)
    assert "SlowFast features missing" in (tmp_path / "1.txt").read_text()
    assert "preflight failed on 1 other rank(s)" in (tmp_path / "0.txt").read_text()
