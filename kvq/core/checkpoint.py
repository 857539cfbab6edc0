"""Loading checkpoints written by the reference code (or by this project) into `VQANetwork`.

Accepted layouts: a bare state dict, `{"state_dict": ...}`, `{"model": ...}`; keys with or
without DataParallel/DDP's `module.` prefix. Each backbone may translate reference key names
(`remap_reference_keys`) and name keys it drops on purpose. Shape mismatches are errors that
name the keys; missing/unexpected keys are reported, never hidden.

Scoring (`load_into(..., strict=True)`, used by test.py and `load_scorer`) needs a checkpoint that
fills every model key: checkpoints written by train.py and reference-trained checkpoints hold the
whole network, the frozen CLIP/CONTRIQUE towers of KSVQE included. The only model keys a checkpoint
may leave out are integer buffers (`relative_position_index`, `num_batches_tracked`): the model
builds them itself and they hold no learned values. Keys of the checkpoint that the model does not
have are an error too, except those a backbone drops on purpose (`LoadReport.dropped`).
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from kvq.core.errors import UserError

log = logging.getLogger(__name__)


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint's tensors do not fit the model built from the config."""


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.missing)} missing", f"{len(self.unexpected)} unexpected",
                 f"{len(self.dropped)} dropped on purpose"]
        return ", ".join(parts)


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint object, with `module.` prefixes removed."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(f"checkpoint holds {type(obj).__name__}, not a state dict")
    out = {}
    for k, v in obj.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def load_checkpoint_file(path: str | Path) -> Any:
    """The whole object saved in a checkpoint file (on the CPU), found by `resolve_checkpoint`
    (a bare file name also where weights are); a missing file is a MissingWeightsError."""
    from kvq.core.weights import resolve_checkpoint

    path = resolve_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointMismatchError(f"{path}: not a readable PyTorch checkpoint ({e})") from e


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (see `extract_state_dict`)."""
    return extract_state_dict(load_checkpoint_file(path))


def remap_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Apply each backbone's `remap_reference_keys` to its `<key>_backbone.` sub-dict.

    Returns (mapped state dict, {dropped key: reason}).
    """
    mapped: dict[str, torch.Tensor] = dict(state)
    dropped: dict[str, str] = {}
    for key in getattr(model, "key_names", []):
        backbone = getattr(model, f"{key}_backbone")
        remap = getattr(backbone, "remap_reference_keys", None)
        if remap is None:
            continue
        prefix = f"{key}_backbone."
        sub = {k[len(prefix):]: v for k, v in mapped.items() if k.startswith(prefix)}
        new_sub, sub_dropped = remap(sub)
        mapped = {k: v for k, v in mapped.items() if not k.startswith(prefix)}
        mapped.update({prefix + k: v for k, v in new_sub.items()})
        dropped.update({prefix + k: why for k, why in sub_dropped.items()})
    return mapped, dropped


MAX_NAMED = 5  # keys named in a strict-load error


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:MAX_NAMED]) + (", ..." if len(keys) > MAX_NAMED else "")


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = False) -> LoadReport:
    """Load a (reference or own) state dict into `model`; raise on shape mismatch.

    `strict=True` (scoring) also raises CheckpointMismatchError when model keys are missing
    (integer buffers the model builds itself aside) or checkpoint keys are unexpected (keys
    dropped on purpose aside), naming how many and the first ones.
    """
    state = extract_state_dict(state)
    mapped, dropped = remap_state_dict(model, state)
    own = model.state_dict()
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in mapped.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointMismatchError(
            "checkpoint does not fit the model built from the config (was it trained with other "
            "model settings, e.g. another tuning_stage?):\n  " + "\n  ".join(bad[:20])
            + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        )
    result = model.load_state_dict(mapped, strict=False)
    report = LoadReport(list(result.missing_keys), list(result.unexpected_keys), dropped)
    if strict:
        unfilled = [k for k in report.missing if own[k].is_floating_point()]
        problems = ([f"{len(unfilled)} of {len(own)} model keys are not in the checkpoint ({_first(unfilled)})"]
                    if unfilled else [])
        problems += ([f"{len(report.unexpected)} checkpoint keys are not in the model ({_first(report.unexpected)})"]
                     if report.unexpected else [])
        if problems:
            raise CheckpointMismatchError("checkpoint does not fill the model built from the config: "
                                          + "; ".join(problems))
    for k, why in dropped.items():
        log.info("checkpoint key %s dropped: %s", k, why)
    if report.unexpected:
        log.warning("checkpoint keys not used by the model (%d): %s", len(report.unexpected),
                    ", ".join(report.unexpected[:10]) + (" ..." if len(report.unexpected) > 10 else ""))
    if report.missing:
        log.warning("model keys not in the checkpoint, left as initialised (%d): %s", len(report.missing),
                    ", ".join(report.missing[:10]) + (" ..." if len(report.missing) > 10 else ""))
    return report
