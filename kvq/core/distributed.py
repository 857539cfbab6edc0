"""Process groups for DistributedDataParallel: NCCL on GPUs, gloo on the CPU."""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from kvq.core.errors import ConfigError

from kvq.core.device import DeviceError, select_devices

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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a rendezvous: torchrun --master_port, init_method)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_device(gpu_id: Optional[str], local_rank: int, local_world_size: int) -> torch.device:
    """This process's device. --gpu_id '2,3': one GPU per process of the node, local rank i on
    GPU ids[i] (the number of ids must be the node's process count); 'cpu': the CPU; none: GPU
    local_rank (modulo the GPU count) when CUDA is available, else the CPU. Unusable GPUs raise
    DeviceError."""
    if gpu_id is None or not gpu_id.strip():
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    device, ids = select_devices(gpu_id)
    if device.type == "cpu":
        return device
    if len(ids) != local_world_size:
        raise DeviceError(f"--gpu_id {gpu_id} names {len(ids)} GPU(s) for {local_world_size} process(es) on this "
                          f"node: give one GPU per process (torchrun --nproc_per_node={len(ids)})")
    return torch.device("cuda", ids[local_rank])


@contextmanager
def distributed(gpu_id: Optional[str], local_rank: Optional[int] = None,
                timeout_minutes: Optional[float] = None) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the process group that torchrun / torch.distributed.launch describe in the environment
    (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_*), yield (info, this process's device),
    leave it on exit.

    Devices: see `process_device` ('cpu' or no CUDA -> gloo on the CPU, else NCCL). Without RANK in
    the environment: one process. local_rank: the --local_rank argument of torch.distributed.launch
    without --use_env.
    timeout_minutes: how long a collective may wait for the other ranks before the run fails
    (--dist_timeout; default: torch's, 10 minutes for NCCL, 30 for gloo).
    """
    local = int(os.environ.get("LOCAL_RANK", local_rank or 0))
    launched = "RANK" in os.environ
    device = process_device(gpu_id, local, int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched else 1)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not launched:
        log.warning("not started by torchrun / torch.distributed.launch: training in one process")
        yield DistInfo(), device
        return
    timeout = {"timeout": timedelta(minutes=timeout_minutes)} if timeout_minutes else {}
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **timeout)
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
