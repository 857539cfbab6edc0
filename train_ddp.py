"""Train with DistributedDataParallel, one process per GPU (or per CPU worker with gloo).

    torchrun --nproc_per_node=2 train_ddp.py -o config/Kwai_KSVQE.yml
    python -m torch.distributed.launch --nproc_per_node=2 --use_env train_ddp.py -o config/Kwai_KSVQE.yml
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --master_port=29500 --nproc_per_node=8 train_ddp.py -o ...

NCCL on GPUs, gloo on the CPU (or with --gpu_id cpu). batch_size is per process: the effective
batch is batch_size x world size; the learning rate is not rescaled (scale optimizer.lr yourself,
e.g. linearly). Rank 0 alone writes checkpoints, plots and the log file.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist

from kvq.cli import add_train_args, load, run_main, train_options
from kvq.trainer import DistInfo, Trainer, setup_logging

log = logging.getLogger("train_ddp")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(p)
    p.add_argument("--sync_bn", action="store_true", help="convert BatchNorm layers to SyncBatchNorm")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None,
                   help="set by torch.distributed.launch without --use_env (LOCAL_RANK is read otherwise)")
    return p.parse_args(argv)


def init_distributed(args: argparse.Namespace) -> tuple[DistInfo, torch.device]:
    """Process group from the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank or 0))
    use_cuda = torch.cuda.is_available() and (args.gpu_id or "").lower() != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        device = torch.device("cpu")
    if "RANK" not in os.environ:
        log.warning("not started by torchrun / torch.distributed.launch: training in one process")
        return DistInfo(0, 1, local_rank), device
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), device


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info, device = init_distributed(args)
    try:
        cfg = load(args)
        setup_logging(Path(args.log_dir), cfg["name"], info.rank)
        log.info("world size %d, rank %d, device %s", info.world_size, info.rank, device)
        best = Trainer(cfg, train_options(args, sync_bn=args.sync_bn), device, info).train()
        if info.is_main:
            for tag, metrics in best.items():
                log.info("best %s: %s", "model" if tag == "n" else "EMA", metrics)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_main(main)
