"""KSVQE through train.py (contrastive loss on) and test.py with multi-clip evaluation, on CPU."""
import csv
from pathlib import Path

import pytest
import torch
import yaml

import test as test_script
import train
from kvq.eval.predict import split_clips
from tests.media import ksvqe_config, make_tiny_dataset


def test_split_clips_scores_each_clip_separately() -> None:
    video = torch.arange(2 * 6).float().view(2, 1, 6, 1, 1).expand(2, 3, 6, 1, 1)
    out = split_clips({"technical": video, "dis_label": torch.tensor([4, 5]), "num_clips": {"technical": 3}}, 3)
    assert out["technical"].shape == (6, 3, 2, 1, 1)
    assert torch.equal(out["technical"][1, 0, :, 0, 0], torch.tensor([2.0, 3.0]))  # video 0, clip 1
    assert out["dis_label"].tolist() == [4, 4, 4, 5, 5, 5]


@pytest.mark.slow
def test_ksvqe_trains_and_scores_with_multiple_clips(tmp_path: Path, caplog) -> None:
    data = make_tiny_dataset(tmp_path / "data", n=4, frames=24, features=False)
    cfg_path = tmp_path / "ksvqe.yml"
    cfg_path.write_text(yaml.safe_dump(ksvqe_config(data)))
    out = tmp_path / "out"
    assert train.main(["-o", str(cfg_path), "-r", str(out), "--log_dir", str(tmp_path / "log"), "--gpu_id", "cpu",
                       "--no_progress"]) == 0
    state = torch.load(out / "tinyKSVQE_val-ltest_last.pth", weights_only=False)
    assert state["history"][0]["train_loss"] > 0 and state["history"][0]["train_contrastive_loss"] > 0
    ckpt = out / "tinyKSVQE_head_val-ltest_n_finetuned.pth"
    assert test_script.main(["-o", str(cfg_path), "--checkpoint", str(ckpt), "--output", str(tmp_path / "p.csv"),
                             "--gpu_id", "cpu", "--no_progress"]) == 0
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ["filename", "v0.mp4", "v2.mp4"]


@pytest.mark.slow
def test_ksvqe_trains_under_ddp(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    data = make_tiny_dataset(tmp_path / "data", n=4, frames=24, features=False)
    cfg_path = tmp_path / "ksvqe.yml"
    cfg_path.write_text(yaml.safe_dump(ksvqe_config(data, batch_size=1)))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29518",
         str(root / "train_ddp.py"), "-o", str(cfg_path), "-r", str(tmp_path / "out"), "--log_dir",
         str(tmp_path / "log"), "--no_progress"],
        cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "out" / "tinyKSVQE_val-ltest_last.pth", weights_only=False)
    assert state["history"][0]["train_contrastive_loss"] > 0
    assert (tmp_path / "out" / "tinyKSVQE_head_val-ltest_n_finetuned.pth").is_file()
