"""Training runs never clobber each other's checkpoints.

A run writes `{name}_{test_set}_last.pth` and `{name}_head_{test_set}_{n|s}_finetuned.pth` into its
output folder (`-r`). A folder that already holds one of these files holds another run (an
earlier run of this name and tag, or another config with the same name): training into it is
refused unless the run continues that one (`--resume_from`) or replaces it (`--overwrite`).
Checkpoints of other names are other runs' files and stay untouched, so runs of different names
share a folder (e.g. the default ./checkpoint/, where the shipped *_test.yml configs look).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch.distributed as dist

from kvq.core.errors import ConfigError
from kvq.core.distributed import DistInfo


def check_output_dir(output_dir: Path, run_files: Sequence[Path], resume_from: Optional[Path], overwrite: bool,
                     info: Optional[DistInfo] = None) -> None:
    """Raise ConfigError when `output_dir` holds any of `run_files` (the checkpoints this run
    writes) and neither `resume_from` nor `overwrite` is given. Under DDP rank 0 looks and
    broadcasts its verdict (ranks on other machines may not see its folder): every rank raises,
    or none, before any rank builds anything."""
    info = info or DistInfo()
    problem = None
    if info.is_main and resume_from is None and not overwrite:
        found = [p for p in run_files if p.is_file()]
        if found:
            last = next((str(p) for p in found if p.name.endswith("_last.pth")), "<its *_last.pth>")
            problem = (f"output folder '{output_dir}' already holds checkpoints of a run of this name "
                       f"({', '.join(p.name for p in found)}): continue that run with --resume_from {last}, "
                       "replace it with --overwrite, or train into another -r folder (or under another name)")
    if info.enabled:
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem:
        raise ConfigError(problem)
