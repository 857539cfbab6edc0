"""Collectives of the engine under 2 gloo processes (torch.multiprocessing.spawn on the CPU):
ranks agree on skipped batches, files and losses; KSVQE's contrastive loss over the global batch."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from datasets.features import write_random_features
from kvq.core import distributed as kvq_dist
from kvq.config import ConfigError
from kvq.core.distributed import DistInfo, all_reduce_sum, free_port, shared_is_file
from kvq.engine.losses import contrastive_loss
from models.modulation import distortion_contrastive_loss
from tests.media import make_tiny_dataset, simplevqa_config


def _entry(rank: int, world: int, port: int, fn, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        fn(DistInfo(rank, world), *args)
    finally:
        dist.destroy_process_group()


def spawn(fn, *args, world: int = 2) -> None:
    """Run fn(DistInfo, *args) in `world` gloo processes; a failure in any of them fails the test."""
    mp.spawn(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True)


# -- KSVQE contrastive loss over the global batch ----------------------------------------------
def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 2, 3, 8, generator=gen), torch.tensor([0, 1, 0, 2])


def _contrastive_rank(info: DistInfo, sizes: list[int]) -> None:
    tokens, labels = _global_batch()
    start = sum(sizes[:info.rank])
    mine = tokens[start:start + sizes[info.rank]].clone().requires_grad_(True)
    loss = contrastive_loss(mine, labels[start:start + sizes[info.rank]], info)
    loss.backward()
    values = [torch.zeros(1) for _ in range(info.world_size)]
    dist.all_gather(values, loss.detach().view(1))
    padded = [torch.zeros(max(sizes), *tokens.shape[1:]) for _ in sizes]
    dist.all_gather(padded, torch.cat([mine.grad, torch.zeros(max(sizes) - len(mine), *tokens.shape[1:])]))
    grads = torch.cat([p[:n] for p, n in zip(padded, sizes)])
    single_tokens = tokens.clone().requires_grad_(True)
    single = distortion_contrastive_loss(single_tokens, labels)
    single.backward()
    # DDP averages the ranks' gradients: the mean of the ranks' losses is the one-process loss
    assert torch.allclose(torch.cat(values).mean(), single.detach(), atol=1e-5)
    assert torch.allclose(grads / info.world_size, single_tokens.grad, atol=1e-6)


@pytest.mark.parametrize("sizes", [[2, 2], [3, 1]], ids=["even", "uneven"])
def test_contrastive_loss_of_two_ranks_is_the_one_process_loss(sizes: list[int]) -> None:
    spawn(_contrastive_rank, sizes)


def test_contrastive_loss_in_one_process_is_the_model_loss() -> None:
    tokens, labels = _global_batch()
    assert torch.equal(contrastive_loss(tokens, labels, DistInfo()), distortion_contrastive_loss(tokens, labels))


def test_contrastive_anchors_select_rows_of_the_full_loss() -> None:
    tokens, labels = _global_batch()
    full = distortion_contrastive_loss(tokens, labels)
    parts = [distortion_contrastive_loss(tokens, labels, anchors=r) for r in (range(0, 1), range(1, 4))]
    assert torch.allclose((parts[0] + 3 * parts[1]) / 4, full, atol=1e-6)


# -- files and sums every rank agrees on -------------------------------------------------------
def _shared_file_rank(info: DistInfo, path: str) -> None:
    if info.rank == 1:  # another node without the shared filesystem
        Path.is_file = lambda self: False if str(self) == path else os.path.isfile(self)
    with pytest.raises(ConfigError, match=r"exists on some ranks but not on ranks \[1\].*shared"):
        shared_is_file(Path(path), info)
    assert shared_is_file(Path(path + ".absent"), info) is False
    assert all_reduce_sum([info.rank, 1.5], info, torch.device("cpu")) == [1.0, 3.0]


def test_ranks_that_see_different_files_all_stop_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "split_00" / "result.json"
    path.parent.mkdir()
    path.write_text("{}")
    spawn(_shared_file_rank, str(path))


def test_dist_timeout_reaches_the_process_group(monkeypatch) -> None:
    seen = {}
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(kvq_dist.dist, "init_process_group", lambda backend, **kw: seen.update(kw, backend=backend))
    monkeypatch.setattr(kvq_dist.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(kvq_dist.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(kvq_dist.dist, "destroy_process_group", lambda: None)
    with kvq_dist.distributed("cpu", timeout_minutes=45) as (info, device):
        assert info.world_size == 2 and device.type == "cpu"
    assert seen == {"backend": "gloo", "timeout": timedelta(minutes=45)}


# -- a training epoch under DDP ----------------------------------------------------------------
def _epoch_rank(info: DistInfo, cfg_path: str, out: str) -> None:
    from kvq.config import load_config
    from kvq.engine.trainer import Trainer, TrainOptions

    result = {}
    for batch_size in (1, 2):  # 1: a batch left empty by the bad video; 2: a non-zero PLCC loss
        cfg = load_config(cfg_path, [f"batch_size={batch_size}"])
        trainer = Trainer(cfg, TrainOptions(output_dir=Path(out), progress=False, sync_bn=True),
                          torch.device("cpu"), info)
        trainer.train_loader.sampler.set_epoch(0)
        order = list(trainer.train_loader.sampler)
        losses, bad = trainer.train_epoch(0)
        result[batch_size] = {"losses": losses, "bad": bad, "order": order}
    Path(out, f"rank{info.rank}.json").write_text(json.dumps(result))


def test_a_bad_video_on_one_rank_skips_that_step_on_both(tmp_path: Path) -> None:
    """batch_size 1, a zero-byte video in the train list: the rank that draws it and the other
    skip that step together (before: one rank went on alone and the collectives mismatched); the
    epoch loss is the mean over both ranks' videos; --sync_bn on gloo is ignored, not a crash."""
    data = make_tiny_dataset(tmp_path / "data", n=4)
    (data / "bad.mp4").write_bytes(b"")
    write_random_features(data / "feat", ["bad.mp4"], np.random.default_rng(0))
    with open(data / "train.csv", "a") as f:
        f.write("bad.mp4,2.0\n")
    cfg = simplevqa_config(data, batch_size=1, ema=False, skip_bad_videos=True)
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    spawn(_epoch_rank, str(cfg_path), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    one = [r["1"] for r in ranks]
    assert sum(r["order"].count(4) for r in one) == 1 and sum(len(r["bad"]) for r in one) == 1  # one rank drew it
    two = [r["2"] for r in ranks]
    assert two[0]["losses"] == two[1]["losses"] and two[0]["losses"]["train_loss"] > 0  # over both ranks


# -- n-split: the test part scored by every rank -----------------------------------------------
def _score_rank(info: DistInfo, cfg_path: str, out: str) -> None:
    import kvq.api.scorer
    import kvq.api.scoring
    from kvq.config import load_config
    from kvq.engine import nsplit
    from kvq.eval.predict import Predictions

    shards = []

    def predict(model, loader, device, amp, desc, progress, errors):  # scores: the labels reversed, no model run
        records = [loader.dataset.dataset.records[i] for i in loader.dataset.indices]
        shards.append([r.video_name for r in records])
        return Predictions([r.video_name for r in records], [-r.label for r in records], [r.label for r in records])

    kvq.api.scorer.load_checkpoint_file = lambda checkpoint: {}
    kvq.api.scorer.load_model = lambda cfg, checkpoint, device, obj: None
    kvq.api.scoring.predict = predict
    metrics = nsplit.score_part(load_config(cfg_path), "val", Path("best.pth"), torch.device("cpu"),
                                Path(out) / "p.csv", False, info)
    Path(out, f"rank{info.rank}.json").write_text(json.dumps({"shard": shards[0], "metrics": metrics}))


def test_split_test_part_is_scored_in_shards_and_written_in_order(tmp_path: Path) -> None:
    """Under DDP each rank scores a shard (before: rank 0 scored all while the others waited in a
    barrier, past NCCL's watchdog on a few hundred KSVQE videos); rank 0 writes them in order."""
    data = make_tiny_dataset(tmp_path / "data", n=5, features=False)
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(yaml.safe_dump(simplevqa_config(data)))
    spawn(_score_rank, str(cfg_path), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    names = [line.split(",")[0] for line in (data / "val.csv").read_text().split()[1:]]
    assert ranks[0]["shard"] == names[0::2] and ranks[1]["shard"] == names[1::2]
    assert [line.split(",")[0] for line in (tmp_path / "p.csv").read_text().split()[1:]] == names
    assert ranks[0]["metrics"]["SROCC"] == pytest.approx(-1.0) and ranks[1]["metrics"] == {}
