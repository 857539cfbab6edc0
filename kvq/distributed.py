"""Process groups for DistributedDataParallel: NCCL on GPUs, gloo on the CPU."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Process-group facts (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed(gpu_id: Optional[str], local_rank: Optional[int] = None) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the process group that torchrun / torch.distributed.launch describe in the environment
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), yield (info, this process's device), leave it on exit.

    gpu_id 'cpu' (or no CUDA) -> gloo on the CPU. Without RANK in the environment: one process.
    local_rank: the --local_rank argument of torch.distributed.launch without --use_env.
    """
    local = int(os.environ.get("LOCAL_RANK", local_rank or 0))
    use_cuda = torch.cuda.is_available() and (gpu_id or "").lower() != "cpu"
    device = torch.device("cpu")
    if use_cuda:
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if "RANK" not in os.environ:
        log.warning("not started by torchrun / torch.distributed.launch: training in one process")
        yield DistInfo(), device
        return
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield DistInfo(dist.get_rank(), dist.get_world_size()), device
    finally:
        dist.destroy_process_group()
