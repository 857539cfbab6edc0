"""A trained checkpoint -> the config it scores with and the model in eval mode."""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from kvq.config import Config, ConfigError, apply_overrides, validate
from kvq.core.checkpoint import CheckpointMismatchError, extract_state_dict, load_checkpoint_file, load_into
from kvq.core.config import source_of
from kvq.core.device import check_amp, configure_backends, to_channels_last
from models import create_model
from models.registry import BACKBONES

log = logging.getLogger(__name__)


def checkpoint_for_test(cfg: Mapping[str, Any], override: Optional[str] = None) -> str:
    """--checkpoint, else test_load_path; an error if neither is set. `load_path` is never used
    to score: it is what training starts from (e.g. a backbone-only pretrained file)."""
    path = override or cfg["test_load_path"]
    if not path:
        note = (f" (load_path '{cfg['load_path']}' is not used to score: it is the checkpoint training starts "
                "from)" if cfg["load_path"] else "")
        raise FileNotFoundError(f"{source_of(cfg)}: no checkpoint to score with: pass "
                                f"--checkpoint or set test_load_path in the config{note}")
    return path


def checkpoint_config(obj: Any, checkpoint: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The validated config stored in a checkpoint written by train.py (with `overrides`, as
    --set); a ConfigError naming the file when it holds none. Backbones are built with
    `pretrained: false`: the checkpoint fills every weight (`load_model` is strict), so scoring
    needs none of the pretrained files training started from."""
    stored = obj.get("config") if isinstance(obj, Mapping) else None
    if not isinstance(stored, Mapping):
        raise ConfigError(f"{checkpoint} holds no config (not a checkpoint written by train.py): give the "
                          "config file too (test.py -o CONFIG, load_scorer(CONFIG, checkpoint=...))")
    cfg = validate(apply_overrides(dict(stored), overrides), f"{checkpoint} (stored config)")
    for key, entry in cfg["model"]["args"].items():  # every weight comes from the checkpoint itself
        if "pretrained" in inspect.signature(BACKBONES.get(key).__init__).parameters:
            entry["backbone"] = {**(entry.get("backbone") or {}), "pretrained": False}
    return cfg


def load_model(cfg: Mapping[str, Any], checkpoint: str, device: torch.device, obj: Any = None) -> nn.Module:
    """The config's network with the checkpoint's weights, in eval mode on `device` (channels-last
    convolutions when the config says so; its tf32 / cudnn_benchmark applied on CUDA). The checkpoint
    must fill every model key (`load_into(strict=True)`): CheckpointMismatchError naming the file
    otherwise. `obj`: the checkpoint file's content when already read (`load_checkpoint_file`),
    so it is read once."""
    model = create_model(cfg)
    try:
        report = load_into(model, extract_state_dict(load_checkpoint_file(checkpoint) if obj is None else obj),
                           strict=True)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{checkpoint}: {e}") from e
    log.info("loaded %s: %s", checkpoint, report.summary())
    if cfg["channels_last"]:
        to_channels_last(model)
    configure_backends(device, cfg["tf32"], cfg["cudnn_benchmark"])
    check_amp(device, cfg["amp"])
    return model.to(device).eval()
