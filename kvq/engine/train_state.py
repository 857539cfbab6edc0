"""Training-process state: seeding, random states saved and restored with `--resume_from`, the
bare model inside its wrappers, and the tags of the two kept networks."""
from __future__ import annotations

import platform
import random
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from kvq.core.device import AutocastForward

# Tags of the trained model and of its EMA: in checkpoint file names (*_n_finetuned.pth,
# *_s_finetuned.pth), history keys (n_SROCC, s_SROCC) and the kept metrics.
MODEL = "n"
EMA = "s"
TAG_NAMES = {MODEL: "model", EMA: "EMA"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy/random seeded from the worker's torch seed; one torch
    thread per worker (the main process computes; more threads only contend for the cores)."""
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's random state; "cuda": the current CUDA device's generator (the one the
    process trains on), so a run resumes on a machine with another number of GPUs."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `rng_state` (the CUDA state goes to the current device)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def bare(model: nn.Module) -> nn.Module:
    """The model inside DataParallel/DDP (and `AutocastForward`) wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel, AutocastForward)):
        model = model.module
    return model


def environment_summary(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (f"python {platform.python_version()}, torch {torch.__version__}, device {device}, GPU {gpu}, "
            f"CPU threads {torch.get_num_threads()}, host {platform.node()}")
