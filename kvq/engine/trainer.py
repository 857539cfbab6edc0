"""The training engine shared by train.py (DataParallel) and train_ddp.py (DDP).

One epoch = train over the train split (random sampling, EMA updated each step), then
validate the model and its EMA (tags 'n' and 's': `kvq.engine.train_state`) on the val split,
keep a checkpoint of each (config `keep`: the best epoch by SROCC + PLCC, or the final epoch's
weights), and write a full training state for `--resume_from`. Checkpoint files:
kvq/engine/checkpoints.py; validation and calibration: kvq/engine/evaluation.py.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from datasets import build_dataset, collate
from datasets.skipping import SkipUnreadable
from kvq.api.scoring import train_scoring_spec
from kvq.core.checkpoint import load_into, read_checkpoint
from kvq.core.config import source_of
from kvq.core.device import AutocastForward, autocast, check_amp, configure_backends, to_channels_last
from kvq.core.distributed import DistInfo, all_reduce_sum, shard
from kvq.core.errors import ConfigError
from kvq.core.io import atomic_torch_save, atomic_write_text
from kvq.engine.checkpoints import TrainerCheckpoints
from kvq.engine.ema import ModelEMA
from kvq.engine.evaluation import TrainerEvaluation
from kvq.engine.feature_cache import FeatureCache, cache_features
from kvq.engine.losses import contrastive_loss, plcc_loss, rank_loss
from kvq.engine.optim import build_optimizer, build_scheduler
from kvq.engine.preflight import check_training
from kvq.engine.runs import check_output_dir
from kvq.engine.train_state import EMA, MODEL, bare, environment_summary, seed_everything, seed_worker
from kvq.eval.plots import curves_plot
from kvq.eval.predict import clip_inputs, eval_loader, video_scores
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


def build_model(cfg: Mapping[str, Any], device: torch.device) -> nn.Module:
    """The config's network on `device`: `load_path`'s weights when set, backbones frozen
    (`freeze_backbone`), channels-last convolutions (`channels_last`)."""
    model = create_model(cfg)
    if cfg["load_path"]:
        report = load_into(model, read_checkpoint(cfg["load_path"]))
        log.info("loaded %s: %s", cfg["load_path"], report.summary())
    if cfg["freeze_backbone"]:
        for key in model.key_names:
            model.backbone(key).requires_grad_(False)
    if cfg["channels_last"]:
        to_channels_last(model)
    return model.to(device)


def standardized_heads(cfg: Mapping[str, Any], model: nn.Module) -> list[str]:
    """Keys whose head standardises its input features; a ConfigError without cache_features."""
    keys = [key for key in model.key_names if getattr(getattr(model, f"{key}_head"), "standardize", False)]
    if keys and not cfg["cache_features"]:
        raise ConfigError(f"{source_of(cfg)}: model.args.{keys[0]}.head.standardize "
                          "needs cache_features: true (its statistics are those of the cached train features)")
    return keys


class Trainer(TrainerCheckpoints, TrainerEvaluation):
    """Builds data, model, optimiser, schedule and EMA from a validated config and trains.

    Checkpoint files: `TrainerCheckpoints`; validation and calibration: `TrainerEvaluation`."""

    def __init__(self, cfg: Mapping[str, Any], opts: TrainOptions, device: torch.device,
                 dist_info: Optional[DistInfo] = None) -> None:
        self.cfg = cfg
        self.opts = opts
        self.device = device
        self.dist = dist_info or DistInfo()
        check_output_dir(opts.output_dir, [self.last_path, self.ckpt_path(MODEL), self.ckpt_path(EMA)],
                         opts.resume_from, opts.overwrite, self.dist)
        self.seed = opts.seed if opts.seed is not None else cfg["seed"]
        seed_everything(self.seed + self.dist.rank)
        configure_backends(device, cfg["tf32"], cfg["cudnn_benchmark"])
        if "train" not in cfg["data"]:
            raise ConfigError(f"{source_of(cfg)}: data.train is required for training")
        check_training(cfg, self.dist)  # every file the run reads is on disk, before any work (all ranks agree)
        self._build_data()
        model = build_model(cfg, device)
        standardized = standardized_heads(cfg, model)
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
    def _build_data(self) -> None:
        """The train and val sets (each checked for size) and their loaders; undecodable train
        videos skipped with `skip_bad_videos` (`SkipUnreadable`)."""
        data = self.cfg["data"]
        train_set = build_dataset(data["train"])
        self.train_set = SkipUnreadable(train_set) if self.cfg["skip_bad_videos"] else train_set
        self.val_set = build_dataset(data["val"]) if "val" in data else None
        self._check_size("train", self.train_set, 1)
        if self.val_set is not None:
            self._check_size("val", self.val_set, 3)
        self.generator = torch.Generator()
        self.train_loader = self._train_loader()
        self.val_loader = eval_loader(shard(self.val_set, self.dist), self.device,  # every video once
                                      num_workers=self.cfg["num_workers"]) if self.val_set is not None else None

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

    def _cache_features(self, model: nn.Module, standardized: Sequence[str]) -> dict[str, FeatureCache]:
        """`cache_features`: the frozen backbones' outputs on the train split (scored as test.py
        scores: the test-phase view, so without train-time augmentation) and the val split; the
        `standardized` keys' heads get the train features' statistics."""
        source = source_of(self.cfg)
        if not self.cfg["freeze_backbone"]:
            raise ConfigError(f"{source}: cache_features needs freeze_backbone: true (the cache holds the "
                              "outputs of frozen backbones)")
        if self.dist.enabled or len(self.opts.device_ids) > 1:
            raise ConfigError(f"{source}: cache_features trains in one process on one device (train.py with "
                              "at most one --gpu_id)")
        progress = self.opts.progress
        train = build_dataset(train_scoring_spec(self.cfg))
        loader = eval_loader(SkipUnreadable(train) if self.cfg["skip_bad_videos"] else train, self.device,
                             num_workers=self.cfg["num_workers"])
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

    # -- training ---------------------------------------------------------------------------
    @property
    def kept(self) -> dict[str, dict[str, float]]:
        """Val metrics (and epoch) of the kept checkpoints per tag (MODEL, EMA), as config `keep` chose them."""
        return self.final if self.cfg["keep"] == "last" else self.best

    def train(self) -> dict[str, dict[str, float]]:
        """Run the remaining epochs; return `kept`: the val metrics of the kept checkpoints per tag."""
        if self.dist.is_main:
            self.opts.output_dir.mkdir(parents=True, exist_ok=True)
            log.info("environment: %s", environment_summary(self.device))
            log.info("config %s:\n%s", source_of(self.cfg), json.dumps(dict(self.cfg), indent=1))
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
                    self._save_best(MODEL, {}, epoch)
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
        if not (self.dist.enabled and self.cfg["skip_bad_videos"]):
            return has_data
        return all_reduce_sum([has_data], self.dist, self.device)[0] == self.dist.world_size
