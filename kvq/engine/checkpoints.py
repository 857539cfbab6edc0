"""The trainer's files: the kept checkpoints (`*_head_<test_set>_{n,s}_finetuned.pth`) and the
full training state (`*_<test_set>_last.pth`) that `--resume_from` continues."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import torch.distributed as dist
from torch import nn

from kvq.core.checkpoint import CheckpointMismatchError, load_checkpoint_file
from kvq.core.distributed import shared_is_file
from kvq.core.io import atomic_torch_save
from kvq.engine.ema import ModelEMA
from kvq.engine.train_state import bare, rng_state, set_rng_state

log = logging.getLogger(__name__)


class TrainerCheckpoints:
    """Checkpoint paths, writing and resuming, for `kvq.engine.trainer.Trainer` (which sets cfg,
    opts, dist, model, ema, optimizer, scheduler, scaler, best, final, history, start_epoch)."""

    def ckpt_path(self, tag: str) -> Path:
        return self.opts.output_dir / f"{self.cfg['name']}_head_{self.opts.test_set}_{tag}_finetuned.pth"

    @property
    def last_path(self) -> Path:
        return self.opts.output_dir / f"{self.cfg['name']}_{self.opts.test_set}_last.pth"

    def _rng_states(self) -> list[dict[str, Any]]:
        """Every rank's random state, indexed by rank (a collective call under DDP)."""
        if not self.dist.enabled:
            return [rng_state()]
        states: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(states, rng_state())
        return states

    def _state(self, epoch: int, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "state_dict": bare(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "rng": rng_states,
            "best": self.best,
            "final": self.final,
            "history": self.history,
            "config": dict(self.cfg),
        }

    def _resume(self, path: Path) -> None:
        shared_is_file(path, self.dist)  # every rank reads it: all see it, or all stop with a message
        state = load_checkpoint_file(path)
        missing = [k for k in ("state_dict", "optimizer", "scheduler", "epoch", "rng")
                   if not isinstance(state, dict) or k not in state]
        if missing:
            raise CheckpointMismatchError(f"{path} is not a training state written by train.py (lacks {missing}); "
                                          "to start from weights only, use load_path in the config")
        bare(self.model).load_state_dict(state["state_dict"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        elif self.ema:
            log.warning("%s holds no EMA weights (trained with ema: false); the EMA restarts from the "
                        "resumed weights", path)
            self.ema = ModelEMA(bare(self.model), self.cfg["ema_decay"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():  # empty when saved with amp other than fp16
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = state["epoch"] + 1
        self.best = state["best"]
        self.final = state.get("final", {})  # states written before `keep` existed
        self.history = state["history"]
        states = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
        else:
            log.warning("%s was written by %d process(es), this run has %d: every process takes the random "
                        "state of rank 0, so the run does not repeat an uninterrupted one exactly",
                        path, len(states), self.dist.world_size)
            set_rng_state(states[0])
        log.info("resumed from %s at epoch %d", path, self.start_epoch)


    def _save_best(self, tag: str, metrics: Mapping[str, Any], epoch: int, model: Optional[nn.Module] = None) -> None:
        model = model if model is not None else bare(self.model)
        atomic_torch_save({"state_dict": model.state_dict(), "validation_results": dict(metrics), "epoch": epoch,
                           "config": dict(self.cfg)}, self.ckpt_path(tag))
        log.info("saved %s (epoch %d)", self.ckpt_path(tag), epoch)
