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


class _BNNet(torch.nn.Module):
    """Linear + BatchNorm + an int64 buffer; `spare` is used only when has_unused_parameters is False."""

    def __init__(self, has_unused: bool) -> None:
        super().__init__()
        self.has_unused_parameters = has_unused
        self.fc = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.spare = torch.nn.Linear(4, 1)
        self.register_buffer("index", torch.arange(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.fc(x))[:, self.index]
        return y.sum(1) if self.has_unused_parameters else self.spare(y)[:, 0]


def _ddp_worker(rank: int, init_file: str, results: str) -> None:
    import types

    import torch.distributed as dist

    from kvq.core.distributed import DistInfo
    from kvq.engine.trainer import Trainer, TrainOptions

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    out = {}
    for has_unused in (False, True):
        torch.manual_seed(0)
        engine = types.SimpleNamespace(dist=DistInfo(rank, 2), opts=TrainOptions(), device=torch.device("cpu"))
        ddp = Trainer._wrap(engine, _BNNet(has_unused))
        for step in range(2):  # a second step fails when unused parameters are not looked for
            torch.manual_seed(10 * rank + step)
            ddp(torch.randn(8, 3) + rank).sum().backward()
        out[has_unused] = {"find_unused": ddp.find_unused_parameters, "broadcast": ddp.broadcast_buffers,
                           "running_mean": ddp.module.bn.running_mean.clone(), "grad": ddp.module.fc.weight.grad}
    torch.save(out, f"{results}.{rank}")
    dist.destroy_process_group()


def test_ddp_looks_for_unused_parameters_only_when_the_model_has_some(tmp_path: Path) -> None:
    """2 gloo ranks: find_unused_parameters follows the model, no per-step buffer broadcast (each
    rank keeps its own BatchNorm statistics), gradients still averaged."""
    torch.multiprocessing.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path / "r")), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"r.{rank}") for rank in (0, 1))
    for has_unused in (False, True):
        assert r0[has_unused]["find_unused"] is has_unused and r0[has_unused]["broadcast"] is False
        assert not torch.allclose(r0[has_unused]["running_mean"], r1[has_unused]["running_mean"])
        torch.testing.assert_close(r0[has_unused]["grad"], r1[has_unused]["grad"])


def test_ksvqe_declares_its_unused_parameters() -> None:
    from models.ksvqe import KSVQE

    assert not KSVQE(pretrained=False, tuning_stage=1, checkpoint=False).has_unused_parameters
    model = KSVQE(pretrained=False, tuning_stage=4, checkpoint=False)
    assert model.has_unused_parameters and model.a1.numel() == 0  # a1, a2 empty: never used


@pytest.mark.slow
@pytest.mark.parametrize("tuning_stage", [1, 4])
def test_ksvqe_unused_parameters_by_a_training_step(tuning_stage: int) -> None:
    """The declaration checked against a real step: trainable parameters left without gradient."""
    from models import VQANetwork

    model = VQANetwork({"KSVQE": {"backbone": {"pretrained": False, "tuning_stage": tuning_stage,
                                               "checkpoint": False}, "head": {}}}).train()
    out = model({"fragment": torch.randn(2, 3, 4, 288, 288), "resize_video": torch.randn(2, 3, 4, 112, 112),
                 "dis_label": torch.tensor([1, 2])})
    (out["score"].sum() + out["contrastive_loss"]).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert bool(unused) is model.has_unused_parameters, unused
