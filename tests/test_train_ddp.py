"""train_ddp.py under torchrun: 2 processes, gloo on the CPU. Rank 0's validation metrics
must equal a single-process evaluation of the same checkpoint (every video once, no padding)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import test as test_script
from tests.media import make_tiny_dataset, simplevqa_config

ROOT = Path(__file__).resolve().parents[1]


LAUNCHES = {  # each: the launcher command lines started together (two processes in all)
    "torchrun": [["torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]],
    "launch": [["torch.distributed.launch", "--use_env", "--nproc_per_node=2", "--master_port=29517"]],
    "two_nodes": [["torch.distributed.run", "--nnodes=2", f"--node_rank={r}", "--nproc_per_node=1",
                   "--master_addr=127.0.0.1", "--master_port=29519"] for r in (0, 1)],
}


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_ddp_two_processes_match_single_process_metrics(tmp_path: Path, capsys, launch: str) -> None:
    data = make_tiny_dataset(tmp_path / "data")
    lines = (data / "val.csv").read_text().splitlines()
    (data / "val5.csv").write_text("\n".join(lines[:6]) + "\n")  # header + 5 videos: uneven shards
    cfg = simplevqa_config(data, epochs=1, ema=False)
    cfg["data"]["val"]["args"]["anno_file"] = str(data / "val5.csv")
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = [str(ROOT / "train_ddp.py"), "-o", str(cfg_path), "-r", str(out), "--log_dir", str(tmp_path / "log"),
            "--gpu_id", "cpu", "--no_progress"]
    procs = [subprocess.Popen([sys.executable, "-m", *launcher, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for launcher in LAUNCHES[launch]]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    assert len(list((tmp_path / "log").glob("*.log"))) == 1  # rank 0 only
    ckpt = out / "tiny_head_val-ltest_n_finetuned.pth"
    saved = torch.load(ckpt, weights_only=False)["validation_results"]
    assert torch.load(ckpt, weights_only=False)["calibration"]["n"] == 6  # both ranks' train shards
    rng = torch.load(out / "tiny_val-ltest_last.pth", weights_only=False)["rng"]  # each rank's, for resuming
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])

    capsys.readouterr()
    assert test_script.main(["-o", str(cfg_path), "--checkpoint", str(ckpt), "--split", "val", "--gpu_id", "cpu",
                             "--output", str(tmp_path / "p.csv"), "--no_progress"]) == 0
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 6
    for key in ("SROCC", "PLCC", "KROCC", "RMSE"):
        assert single[key] == pytest.approx(saved[key], abs=1e-6), key
