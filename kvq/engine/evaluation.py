"""The trainer's evaluations: validation after each epoch (model and EMA; the kept checkpoints
chosen by config `keep`) and the calibration fitted on the train split after the last epoch."""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch.distributed as dist
from torch.utils.data import Subset

from datasets import build_dataset
from datasets.skipping import SkipUnreadable
from kvq.api.scoring import train_scoring_spec
from kvq.core.checkpoint import load_checkpoint_file
from kvq.core.io import atomic_torch_save
from kvq.engine.train_state import EMA, MODEL, TAG_NAMES, bare
from kvq.eval.calibration import CHECKPOINT_KEY, calibration_indices, fit_calibration, mos_range
from kvq.eval.correlations import CORRELATIONS, selection_score, validation_metrics
from kvq.eval.plots import scatter_plot
from kvq.eval.predict import eval_loader, gather_predictions, predict, predict_each

log = logging.getLogger(__name__)


class TrainerEvaluation:
    """Validation and calibration for `kvq.engine.trainer.Trainer` (which sets cfg, opts, dist,
    device, seed, model, ema, caches, val_loader, best, final, and the TrainerCheckpoints methods)."""

    def validate(self, epoch: int) -> dict[str, float]:
        """Metrics of the model (tag MODEL) and the EMA (tag EMA), both in eval mode; tracks the bests and saves
        the kept checkpoints (`keep: best`: each new best; `keep: last`: the final epoch's)."""
        record: dict[str, float] = {}
        models = {MODEL: bare(self.model)}
        if self.ema:
            models[EMA] = self.ema.module
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
                         f"{self.cfg['name']} epoch {epoch} ({TAG_NAMES[tag]})", metrics)
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
        saved = [t for t in (MODEL, EMA) if (t in self.kept or t == MODEL and self.val_loader is None)
                 and self.ckpt_path(t).is_file()]
        shared = [saved]
        if self.dist.enabled:  # only rank 0 knows the kept epochs
            dist.broadcast_object_list(shared, src=0)
        dataset = build_dataset(train_scoring_spec(self.cfg))
        cache = self.caches.get("train")  # the same videos, scored the same way, already computed
        indices = calibration_indices(len(cache or dataset), settings["max_videos"], self.seed)
        loader = None if cache is not None else eval_loader(  # batch 1: as validation
            Subset(SkipUnreadable(dataset), indices[self.dist.rank::self.dist.world_size]), self.device,
            num_workers=self.cfg["num_workers"])
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
