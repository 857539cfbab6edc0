"""Train with DistributedDataParallel, one process per GPU (or per CPU worker with gloo).

    torchrun --nproc_per_node=2 train_ddp.py -o config/Kwai_KSVQE.yml
    python -m torch.distributed.launch --nproc_per_node=2 --use_env train_ddp.py -o config/Kwai_KSVQE.yml
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --master_port=29500 --nproc_per_node=8 train_ddp.py -o ...

NCCL on GPUs, gloo on the CPU (or with --gpu_id cpu). batch_size is per process: the effective
batch is batch_size x world size; the learning rate is not rescaled (scale optimizer.lr yourself,
e.g. linearly). Rank 0 alone writes checkpoints, plots and the log file.

--gpu_id 2,3 gives each process of the node its GPU (local rank i -> GPU ids[i]; as many ids as
--nproc_per_node); without it local rank i uses GPU i. Exit statuses: docs/commands.md "Exit statuses".
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

from kvq.cli import (EXIT_OK, add_ddp_args, add_train_args, load, log_level, log_to_file, make_parser, run_main,
                     setup_logging, train_options)

log = logging.getLogger("train_ddp")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    add_train_args(p)
    add_ddp_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args), int(os.environ.get("RANK", 0)))
    from kvq.core.distributed import distributed
    from kvq.engine.trainer import Trainer

    with distributed(args.gpu_id, args.local_rank, args.dist_timeout) as (info, device):
        cfg = load(args)
        log_to_file(Path(args.log_dir), cfg["name"], info.rank)
        log.info("world size %d, rank %d, device %s", info.world_size, info.rank, device)
        kept = Trainer(cfg, train_options(args, sync_bn=args.sync_bn), device, info).train()
        if info.is_main:
            for tag, metrics in kept.items():
                log.info("kept %s (keep: %s): %s", "model" if tag == "n" else "EMA", cfg["keep"], metrics)
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
