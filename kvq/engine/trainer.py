"""The training engine shared by train.py (DataParallel) and train_ddp.py (DDP).

One epoch = train over the train split (random sampling, EMA updated each step), then
validate the model ('n') and its EMA ('s') on the val split, keep a checkpoint of each (config
`keep`: the best epoch by SROCC + PLCC, or the final epoch's weights), and write a full training
state for `--resume_from`.
"""
from __future__ import annotations

import copy
import json
import logging
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from datasets import build_dataset, collate
from kvq.eval.calibration import CHECKPOINT_KEY, calibration_indices, fit_calibration, mos_range
from kvq.core.checkpoint import CheckpointMismatchError, load_checkpoint_file, load_into, read_checkpoint
from kvq.core.errors import ConfigError
from kvq.core.device import AutocastForward, autocast, check_amp, configure_backends, to_channels_last
from kvq.core.distributed import DistInfo, all_reduce_sum, shard, shared_is_file
from kvq.engine.ema import ModelEMA
from kvq.engine.feature_cache import FeatureCache, cache_features
from kvq.eval.predict import Predictions, clip_inputs, gather_predictions, predict, predict_each, video_scores
from kvq.api.inference import SkipUnreadable, train_scoring_spec
from kvq.core.io import atomic_torch_save, atomic_write_text
from kvq.engine.losses import contrastive_loss, plcc_loss, rank_loss
from kvq.eval.correlations import CORRELATIONS, selection_score, validation_metrics
from kvq.engine.optim import build_optimizer
from kvq.engine.preflight import check_training
from kvq.eval.plots import curves_plot, scatter_plot
from kvq.engine.runs import check_output_dir
from kvq.engine.schedule import build_scheduler
from models import create_model

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    output_dir: Path = Path("checkpoint")
    test_set: str = "val-ltest"
    resume_from: Optional[Path] = None
    seed: Optional[int] = None
    log_dir: Path = Path("log")
    progress: bool = True
    sync_bn: bool = False
    stop_after: Optional[int] = None  # epochs to run in this process (the schedule still spans num_epochs)
    overwrite: bool = False  # replace this run's checkpoints found in output_dir (kvq.engine.runs)
    device_ids: list[int] = field(default_factory=list)


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
    """Inverse of `rng_state`; states of older runs hold a list with every visible GPU's CUDA
    state: the current device's entry is used (the first when there are fewer entries)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if isinstance(cuda, (list, tuple)):
            index = torch.cuda.current_device()
            cuda = cuda[index] if index < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda)


def bare(model: nn.Module) -> nn.Module:
    """The model inside DataParallel/DDP (and `AutocastForward`) wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel, AutocastForward)):
        model = model.module
    return model


def environment_summary(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (f"python {platform.python_version()}, torch {torch.__version__}, device {device}, GPU {gpu}, "
            f"CPU threads {torch.get_num_threads()}, host {platform.node()}")


class Trainer:
    """Builds data, model, optimiser, schedule and EMA from a validated config and trains."""

    def __init__(self, cfg: Mapping[str, Any], opts: TrainOptions, device: torch.device,
                 dist_info: Optional[DistInfo] = None) -> None:
        self.cfg = cfg
        self.opts = opts
        self.device = device
        self.dist = dist_info or DistInfo()
        check_output_dir(opts.output_dir, [self.last_path, self.ckpt_path("n"), self.ckpt_path("s")],
                         opts.resume_from, opts.overwrite, self.dist)
        self.seed = opts.seed if opts.seed is not None else cfg["seed"]
        seed_everything(self.seed + self.dist.rank)
        configure_backends(device, cfg["tf32"], cfg["cudnn_benchmark"])
        if "train" not in cfg["data"]:
            raise ConfigError(f"{getattr(cfg, 'source', 'config')}: data.train is required for training")
        check_training(cfg, self.dist)  # every file the run reads is on disk, before any work (all ranks agree)
        self.train_set = build_dataset(cfg["data"]["train"])
        self.train_set.skip_bad_videos = cfg["skip_bad_videos"]
        self.val_set = build_dataset(cfg["data"]["val"]) if "val" in cfg["data"] else None
        self._check_size("train", self.train_set, 1)
        if self.val_set is not None:
            self._check_size("val", self.val_set, 3)
        self.generator = torch.Generator()
        self.train_loader = self._train_loader()
        self.val_loader = self._val_loader() if self.val_set is not None else None

        model = create_model(cfg)
        if cfg["load_path"]:
            report = load_into(model, read_checkpoint(cfg["load_path"]))
            log.info("loaded %s: %s", cfg["load_path"], report.summary())
        if cfg["freeze_backbone"]:
            for key in model.key_names:
                model.backbone(key).requires_grad_(False)
        if cfg["channels_last"]:
            to_channels_last(model)
        model.to(device)
        standardized = [key for key in model.key_names if getattr(getattr(model, f"{key}_head"), "standardize", False)]
        if standardized and not cfg["cache_features"]:
            raise ConfigError(f"{getattr(cfg, 'source', 'config')}: model.args.{standardized[0]}.head.standardize "
                              "needs cache_features: true (its statistics are those of the cached train features)")
        self.caches = self._cache_features(model, standardized) if cfg["cache_features"] else {}
        self.ema = ModelEMA(model, cfg["ema_decay"]) if cfg["ema"] else None
        self.optimizer = build_optimizer(model, cfg["optimizer"])
        steps = len(self._cached_batches()) if self.caches else len(self.train_loader)
        self.scheduler = build_scheduler(self.optimizer, cfg["warmup_epochs"],
                                         cfg["num_epochs"] + cfg["l_num_epochs"], steps)
        check_amp(device, cfg["amp"])
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg["amp"] == "fp16")
        self.model = self._wrap(model)
        self.start_epoch = 0
        self.best: dict[str, dict[str, float]] = {}
        self.final: dict[str, dict[str, float]] = {}  # the final epoch's val metrics (keep: last)
        self.history: list[dict[str, float]] = []
        self.writer = None
        if cfg["tensorboard"] and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(opts.log_dir / "tensorboard" / cfg["name"]))
        if opts.resume_from:
            self._resume(opts.resume_from)

    # -- data -------------------------------------------------------------------------------
    def _check_size(self, split: str, data: Dataset, min_videos: int) -> None:
        """Fail before training (on every rank, so DDP cannot hang) if a split is too small (labels:
        checked by the preflight)."""
        anno_file = self.cfg["data"][split]["args"]["anno_file"]
        if len(data) < min_videos:
            raise ConfigError(f"data.{split}.args.anno_file '{anno_file}' lists {len(data)} videos; "
                              f"{split} needs at least {min_videos} (correlations need 3)")

    def _train_loader(self) -> DataLoader:
        sampler = None
        if self.dist.enabled:
            sampler = DistributedSampler(self.train_set, self.dist.world_size, self.dist.rank, shuffle=True,
                                         seed=self.seed)
        batch_size = self.cfg["batch_size"]
        videos = len(sampler) if sampler is not None else len(self.train_set)  # this process's share
        if videos < batch_size:  # full batches only: tiny sets get one smaller batch rather than none
            log.warning("data.train.args.anno_file '%s' gives %d videos%s, fewer than batch_size %d: training "
                        "uses batches of %d", self.cfg["data"]["train"]["args"]["anno_file"], videos,
                        " per process" if sampler is not None else "", batch_size, videos)
            batch_size = videos
        return DataLoader(self.train_set, batch_size=batch_size, shuffle=sampler is None,
                          sampler=sampler, num_workers=self.cfg["num_workers"], collate_fn=collate,
                          worker_init_fn=seed_worker, generator=self.generator, drop_last=True,
                          pin_memory=self.device.type == "cuda")  # a last batch of 1 has no PLCC loss

    def _val_loader(self) -> DataLoader:
        return DataLoader(shard(self.val_set, self.dist), batch_size=1, shuffle=False,  # every video once
                          num_workers=self.cfg["num_workers"], collate_fn=collate,
                          pin_memory=self.device.type == "cuda")

    def _cache_features(self, model: nn.Module, standardized: Sequence[str]) -> dict[str, FeatureCache]:
        """`cache_features`: the frozen backbones' outputs on the train split (scored as test.py
        scores: the test-phase view, so without train-time augmentation) and the val split; the
        `standardized` keys' heads get the train features' statistics."""
        source = getattr(self.cfg, "source", "config")
        if not self.cfg["freeze_backbone"]:
            raise ConfigError(f"{source}: cache_features needs freeze_backbone: true (the cache holds the "
                              "outputs of frozen backbones)")
        if self.dist.enabled or len(self.opts.device_ids) > 1:
            raise ConfigError(f"{source}: cache_features trains in one process on one device (train.py with "
                              "at most one --gpu_id)")
        progress = self.opts.progress
        train = build_dataset(train_scoring_spec(self.cfg))
        train.skip_bad_videos = self.cfg["skip_bad_videos"]
        loader = DataLoader(train, batch_size=1, shuffle=False, num_workers=self.cfg["num_workers"],
                            collate_fn=collate, pin_memory=self.device.type == "cuda")
        t0 = time.time()
        caches = {"train": cache_features(model, loader, self.device, self.cfg["amp"], "train features", progress)}
        if self.val_loader is not None:
            caches["val"] = cache_features(model, self.val_loader, self.device, self.cfg["amp"], "val features",
                                           progress)
        log.info("cache_features: backbone features of %s computed in %.1f s; the heads train on them",
                 ", ".join(f"{len(c)} {split}" for split, c in caches.items()), time.time() - t0)
        for key in standardized:
            getattr(model, f"{key}_head").fit_standardization(caches["train"].features[key].to(self.device))
        return caches

    def _cached_batches(self) -> list[torch.Tensor]:
        """Indices into the train cache for one epoch, shuffled by `self.generator`; full batches
        only, as the train loader (fewer videos than batch_size: one batch of them all)."""
        n = len(self.caches["train"])
        size = min(self.cfg["batch_size"], n)
        order = torch.randperm(n, generator=self.generator)
        return list(order[:n - n % size].split(size))

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP (under torchrun), DataParallel (several --gpu_id), or the model itself.

        DDP searches the graph for unused parameters only when the model has some
        (`VQANetwork.has_unused_parameters`), and broadcasts no buffers per step: the constant
        index buffers need none, and BatchNorm statistics only count where they are read, which
        are rank 0's (validation broadcasts them first; rank 0 writes the checkpoints)."""
        if self.dist.enabled:
            if self.opts.sync_bn and self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif self.opts.sync_bn:
                log.warning("--sync_bn ignored: SyncBatchNorm needs CUDA (gloo on the CPU cannot run it)")
            kwargs = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            return nn.parallel.DistributedDataParallel(model, find_unused_parameters=model.has_unused_parameters,
                                                       broadcast_buffers=False, **kwargs)
        if len(self.opts.device_ids) > 1:  # replica threads re-enter autocast: with our dtype, not fp16
            return nn.DataParallel(AutocastForward(model, self.cfg["amp"]), device_ids=self.opts.device_ids)
        return model

    # -- checkpoints ------------------------------------------------------------------------
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

    # -- training ---------------------------------------------------------------------------
    @property
    def kept(self) -> dict[str, dict[str, float]]:
        """Val metrics (and epoch) of the kept checkpoints per tag ('n', 's'), as config `keep` chose them."""
        return self.final if self.cfg["keep"] == "last" else self.best

    def train(self) -> dict[str, dict[str, float]]:
        """Run the remaining epochs; return `kept`: the val metrics of the kept checkpoints per tag."""
        if self.dist.is_main:
            self.opts.output_dir.mkdir(parents=True, exist_ok=True)
            log.info("environment: %s", environment_summary(self.device))
            log.info("config %s:\n%s", getattr(self.cfg, "source", ""), json.dumps(dict(self.cfg), indent=1))
        end = self.cfg["num_epochs"]
        if self.opts.stop_after is not None:
            end = min(end, self.start_epoch + self.opts.stop_after)
        for epoch in range(self.start_epoch, end):
            t0 = time.time()
            losses, bad = self.train_epoch(epoch)
            record: dict[str, float] = {"epoch": epoch, **losses, "seconds": time.time() - t0}
            if bad:
                log.warning("epoch %d skipped %d undecodable videos:\n  %s", epoch, len(bad), "\n  ".join(bad))
            if self.val_loader is not None:
                record.update(self.validate(epoch))
            self.history.append(record)
            if self.writer:
                for key, value in record.items():
                    if key != "epoch":
                        self.writer.add_scalar(f"epoch/{key}", value, epoch)
                self.writer.flush()
            if self.dist.is_main:
                log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in record.items()))
                if self.cfg["save_model"] and self.val_loader is None:
                    self._save_best("n", {}, epoch)
            if self.cfg["save_model"]:
                rng_states = self._rng_states()
                if self.dist.is_main:
                    atomic_torch_save(self._state(epoch, rng_states), self.last_path)
        if end == self.cfg["num_epochs"]:
            self.calibrate()
        if self.writer:
            self.writer.close()
        if self.dist.is_main and self.history:
            curves_plot(self.history, self.opts.output_dir / f"{self.cfg['name']}_{self.opts.test_set}_curves.png")
            atomic_write_text(self.opts.output_dir / f"{self.cfg['name']}_{self.opts.test_set}_history.json",
                              json.dumps(self.history, indent=1))
        return self.kept

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], list[str]]:
        """One pass over the training split; returns ({train_loss, train_contrastive_loss (KSVQE)}
        averaged over the videos of all ranks, this rank's undecodable videos skipped)."""
        self.model.train()
        self.generator.manual_seed(self.seed * 1000 + epoch + 1_000_003 * self.dist.rank)  # rank 0: as one process
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch)
        weights = self.cfg["loss"]
        total, contrastive, count, bad = 0.0, 0.0, 0, []
        batches = self._cached_batches() if self.caches else self.train_loader
        bar = tqdm(batches, desc=f"epoch {epoch}", disable=not (self.opts.progress and self.dist.is_main),
                   dynamic_ncols=True)
        for batch in bar:
            if self.caches:  # batch: indices into the train cache; the heads alone run
                feats, n = self.caches["train"].batch(batch, self.device)
                label = self.caches["train"].labels[batch].float().to(self.device)[:, None]
                out = {"score": bare(self.model).heads(feats)}
            else:
                bad += [f"{path}: {error}" for path, error in batch.pop("bad_videos")]
                if not self._all_have_data("label" in batch):
                    continue
                inputs, n = clip_inputs(batch, self.device)
                label = batch["label"].float().to(self.device)[:, None]
                with autocast(self.device, self.cfg["amp"]):
                    out = self.model(inputs)
            pred = video_scores(out["score"], n)
            loss = weights["plcc"] * plcc_loss(pred, label)
            if weights["rank"]:
                loss = loss + weights["rank"] * rank_loss(pred, label)
            if "distortion_tokens" in out:
                c = contrastive_loss(out["distortion_tokens"], inputs["dis_label"], self.dist)
                contrastive += float(c.detach()) * len(label)
                loss = loss + weights["contrastive"] * c
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema:
                self.ema.update(bare(self.model))
            total += float(loss.detach()) * len(label)
            count += len(label)
            lr = self.scheduler.get_last_lr()[0]
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
            if self.writer:
                step = self.scheduler.last_epoch
                self.writer.add_scalar("train/loss", float(loss.detach()), step)
                self.writer.add_scalar("train/lr", lr, step)
        total, contrastive, count = all_reduce_sum([total, contrastive, count], self.dist, self.device)  # all ranks
        losses = {"train_loss": total / max(count, 1)}
        if contrastive:
            losses["train_contrastive_loss"] = contrastive / max(count, 1)
        return losses, bad

    def _all_have_data(self, has_data: bool) -> bool:
        """Whether every rank's batch kept a video (skip_bad_videos can empty one rank's batch):
        under DDP the ranks skip a step together, or their gradient all-reduces would not pair."""
        if not (self.dist.enabled and self.train_set.skip_bad_videos):
            return has_data
        return all_reduce_sum([has_data], self.dist, self.device)[0] == self.dist.world_size

    def validate(self, epoch: int) -> dict[str, float]:
        """Metrics of the model ('n') and the EMA ('s'), both in eval mode; tracks the bests and saves
        the kept checkpoints (`keep: best`: each new best; `keep: last`: the final epoch's)."""
        record: dict[str, float] = {}
        models = {"n": bare(self.model)}
        if self.ema:
            models["s"] = self.ema.module
        if self.dist.enabled:  # BN statistics of the last step differ per rank: use rank 0's
            for model in models.values():
                for tensor in model.state_dict().values():
                    dist.broadcast(tensor, src=0)
        if self.caches:
            every = {tag: self.caches["val"].predict(model, self.device) for tag, model in models.items()}
        else:
            every = predict_each(models, self.val_loader, self.device, self.cfg["amp"], desc="validate",
                                 progress=self.opts.progress and self.dist.is_main)  # one pass, both models
        for tag, model in models.items():
            preds = gather_predictions(every[tag], self.dist)
            if not self.dist.is_main:
                continue
            metrics = validation_metrics(preds.scores, preds.labels, self.cfg["metrics_fit"])
            record.update({f"{tag}_{k}": v for k, v in metrics.items() if k in CORRELATIONS})
            scatter_plot(preds.scores, preds.labels,
                         self.opts.output_dir / "plots" / f"{self.cfg['name']}_epoch{epoch:03d}_{tag}.png",
                         f"{self.cfg['name']} epoch {epoch} ({'model' if tag == 'n' else 'EMA'})", metrics)
            summary = {**{k: metrics[k] for k in CORRELATIONS}, "epoch": epoch, "fit": metrics["fit"]}
            best = self.best.get(tag)
            if best is None or selection_score(metrics) > selection_score(best):
                self.best[tag] = summary
                if self.cfg["save_model"] and self.cfg["keep"] == "best":
                    self._save_best(tag, summary, epoch, model)
            if epoch == self.cfg["num_epochs"] - 1:
                self.final[tag] = summary
                if self.cfg["save_model"] and self.cfg["keep"] == "last":
                    self._save_best(tag, summary, epoch, model)
        if self.dist.enabled:
            dist.barrier()
        return record

    def calibrate(self) -> None:
        """Fit each kept model's calibration (kvq/eval/calibration.py) on the train split, scored
        as test.py scores (phase 'test', the test/val views); store it in that checkpoint under
        "calibration" and all of them in the last state under "best_calibration". Under DDP each
        rank scores a shard and rank 0 fits and writes."""
        settings = self.cfg["calibration"]
        if not (settings["enabled"] and self.cfg["save_model"]):
            return
        saved = [t for t in ("n", "s") if (t in self.kept or t == "n" and self.val_loader is None)
                 and self.ckpt_path(t).is_file()]
        shared = [saved]
        if self.dist.enabled:  # only rank 0 knows the kept epochs
            dist.broadcast_object_list(shared, src=0)
        dataset = build_dataset(train_scoring_spec(self.cfg))
        cache = self.caches.get("train")  # the same videos, scored the same way, already computed
        indices = calibration_indices(len(cache or dataset), settings["max_videos"], self.seed)
        loader = None if cache is not None else DataLoader(
            Subset(SkipUnreadable(dataset), indices[self.dist.rank::self.dist.world_size]), batch_size=1,
            shuffle=False, num_workers=self.cfg["num_workers"], collate_fn=collate,
            pin_memory=self.device.type == "cuda")  # batch 1: as validation
        scale = mos_range(self.cfg, [r.label for r in dataset.records])
        model = copy.deepcopy(bare(self.model))
        fitted: dict[str, dict[str, Any]] = {}
        for tag in shared[0]:
            state: dict[str, Any] = {}
            if self.dist.is_main:
                state = load_checkpoint_file(self.ckpt_path(tag))
                model.load_state_dict(state["state_dict"])
            if self.dist.enabled:
                for tensor in model.state_dict().values():
                    dist.broadcast(tensor, src=0)
            errors: list[tuple[str, str]] = []
            if cache is not None:
                preds = cache.subset(indices).predict(model, self.device)
            else:
                preds = gather_predictions(predict(model, loader, self.device, self.cfg["amp"],
                                                   desc=f"calibrate {tag}", errors=errors,
                                                   progress=self.opts.progress and self.dist.is_main), self.dist)
            if errors:
                log.warning("calibration of %s: %d train videos could not be scored", tag, len(errors))
            if not self.dist.is_main:
                continue
            try:
                calibration = fit_calibration(preds.scores, preds.labels, self.cfg["mos_scale"]["name"], scale)
            except ValueError as exc:
                log.warning("no calibration stored in %s: %s", self.ckpt_path(tag), exc)
                continue
            log.info("calibration of %s: %s", self.ckpt_path(tag).name, calibration.describe())
            fitted[tag] = calibration.to_dict()
            atomic_torch_save({**state, CHECKPOINT_KEY: fitted[tag]}, self.ckpt_path(tag))
        if fitted and self.last_path.is_file():
            state = load_checkpoint_file(self.last_path)
            atomic_torch_save({**state, "best_calibration": fitted}, self.last_path)
        if self.dist.enabled:
            dist.barrier()

    def _save_best(self, tag: str, metrics: Mapping[str, Any], epoch: int, model: Optional[nn.Module] = None) -> None:
        model = model if model is not None else bare(self.model)
        atomic_torch_save({"state_dict": model.state_dict(), "validation_results": dict(metrics), "epoch": epoch,
                           "config": dict(self.cfg)}, self.ckpt_path(tag))
        log.info("saved %s (epoch %d)", self.ckpt_path(tag), epoch)

