"""Process groups for DistributedDataParallel: NCCL on GPUs, gloo on the CPU."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from kvq.config import ConfigError

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
def distributed(gpu_id: Optional[str], local_rank: Optional[int] = None,
                timeout_minutes: Optional[float] = None) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the process group that torchrun / torch.distributed.launch describe in the environment
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), yield (info, this process's device), leave it on exit.

    gpu_id 'cpu' (or no CUDA) -> gloo on the CPU. Without RANK in the environment: one process.
    local_rank: the --local_rank argument of torch.distributed.launch without --use_env.
    timeout_minutes: how long a collective may wait for the other ranks before the run fails
    (--dist_timeout; default: torch's, 10 minutes for NCCL, 30 for gloo).
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
    timeout = {"timeout": timedelta(minutes=timeout_minutes)} if timeout_minutes else {}
    dist.init_process_group("nccl" if use_cuda else "gloo", **timeout)
    try:
        yield DistInfo(dist.get_rank(), dist.get_world_size()), device
    finally:
        dist.destroy_process_group()


def shard(data: Dataset, info: DistInfo) -> Dataset:
    """This rank's part of an evaluation set (items rank, rank + world, ...): no padding
    duplicates, every item predicted once over all ranks; the whole set in one process."""
    return Subset(data, range(info.rank, len(data), info.world_size)) if info.enabled else data


def all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """Each value summed over all ranks (the values themselves in one process); a collective call.
    device: this rank's device (NCCL reduces CUDA tensors only)."""
    if not info.enabled:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def shared_is_file(path: Path, info: DistInfo) -> bool:
    """Whether `path` is a file, the same answer on every rank (a collective call under DDP).

    Ranks that see different files (several nodes without a shared filesystem) all raise a
    ConfigError (a usage error: exit status 2) naming the file and the ranks that lack it, instead
    of taking different paths through training and waiting for each other until a timeout."""
    here = Path(path).is_file()
    if not info.enabled:
        return here
    seen: list[Optional[bool]] = [None] * info.world_size
    dist.all_gather_object(seen, here)
    if len(set(seen)) > 1:
        lacking = [r for r, s in enumerate(seen) if not s]
        raise ConfigError(f"{path} exists on some ranks but not on ranks {lacking}: every process must see the "
                           "same files (put the output and --resume_from folders on a filesystem shared by all "
                           "nodes, or copy them to every node)")
    return here
