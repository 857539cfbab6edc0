"""The run config: the one documented schema of a YAML config, composed of the run keys below,
`data:` (datasets/schema.py) and `model:` (models/schema.py); validation and loading.

Every key is documented once. Loading validates the whole file before anything is built: an
unknown key is an error naming the file, the key path and the nearest valid key; a wrong type or a
missing required key is an error too. Defaults are filled in, so code reads `cfg["batch_size"]`
without `.get`. Beyond the schema, the registries decide: `model.args.<key>` must be a registered
backbone, `data.<split>.type` a registered dataset, and each view of `sample_types` may hold only
the options its dataset reads for it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from datasets.schema import DATA_SPEC, check_data
from kvq.core.config import (REQUIRED, Config, ConfigError, Opt, apply_overrides, boolean, integer, mapping, num,
                             schema_rows, string, validate_mapping)
from models.schema import MODEL, check_model

__all__ = ["SCHEMA", "Config", "ConfigError", "validate", "load_config", "describe_schema", "apply_overrides"]

SCHEMA: dict[str, Opt] = {
    "name": string(REQUIRED, "run name: prefix of checkpoint files", nullable=False),
    "num_epochs": integer(50, "training epochs", min=1),
    "l_num_epochs": integer(0, "extra epochs counted in the LR schedule length only (reference)", min=0),
    "warmup_epochs": num(2.5, "linear LR warm-up length in (fractional) epochs; 0 = none", min=0),
    "ema": boolean(True, "keep an exponential moving average of the weights (validated too)"),
    "ema_decay": num(0.999, "EMA decay per step", min=0, max=1, max_exclusive=True),
    "save_model": boolean(True, "write checkpoints"),
    "keep": string("best", "weights of the kept checkpoints (<name>_head_<test_set>_{n,s}_finetuned.pth, model "
                   "and EMA; what test.py, load_scorer and run_splits.py score): 'best' = the val epoch of best "
                   "SROCC+PLCC; 'last' = after the final epoch (still validated and reported; a val split too "
                   "small to pick an epoch on, docs/demo.md)", choices=["best", "last"], nullable=False),
    "batch_size": integer(4, "training batch size (per process under DDP)", min=1),
    "num_workers": integer(6, "data-loader worker processes", min=0),
    "split_seed": integer(42, "", deprecated="stored by the reference without effect; ignored"),
    "seed": integer(42, "seed for python/numpy/torch and data-loader workers"),
    "ddp": boolean(False, "the config is meant for train_ddp.py (informative)"),
    "amp": string("off", "mixed precision (training, validation, test.py): off | bf16 | fp16 (a bare `off`, "
                  "which YAML reads as false, is off); bf16 autocast "
                  "is the fast inference path on CPUs with AVX512-BF16/AMX (see docs/benchmarks.md)",
                  choices=["off", "bf16", "fp16"], nullable=False),
    "channels_last": boolean(False, "convolution weights (and so activations) in channels-last memory format "
                             "(training and test.py); faster convolutions, same values"),
    "tf32": boolean(True, "CUDA only: TF32 tensor cores for float32 matmuls and convolutions (about 10 significant "
                    "bits: faster training and scoring on Ampere+ GPUs; false for exact float32)"),
    "cudnn_benchmark": boolean(True, "CUDA only: cuDNN times its convolution algorithms on the first batch of "
                               "each input shape and keeps the fastest (fixed clip sizes: faster)"),
    "freeze_backbone": boolean(False, "train only the heads: backbone weights frozen (BatchNorm statistics still adapt in training)"),
    "cache_features": boolean(False, "with freeze_backbone: compute each train and val video's backbone features "
                              "once, on the test-phase view (so no train-time augmentation), and train the heads "
                              "on them: an epoch costs the heads only; checkpoints still score raw videos "
                              "(one process, one device; docs/commands.md)"),
    "skip_bad_videos": boolean(False, "training only: skip undecodable videos, list them after the epoch"),
    "metrics_fit": string("linear", "PLCC/RMSE after a 'linear' rescale or a 'logistic' 4-parameter fit "
                          "to the evaluated set's own labels (VQEG practice; not a calibration)",
                          choices=["linear", "logistic"], nullable=False),
    "calibration": mapping(
        {
            "enabled": boolean(True, "after training, fit a map from raw outputs to the MOS scale on the train "
                               "split and store it in the kept checkpoints (docs/calibration.md)"),
            "max_videos": Opt((int,), 1000, "train videos scored for the fit: a seeded random subset of this "
                              "many (null = all)", min=2),
        },
        "calibrated scores",
    ),
    "mos_scale": mapping(
        {
            "name": string("MOS", "name of the training labels' scale, stored with the calibration",
                           nullable=False),
            "min": Opt((int, float), None, "lowest score of the scale (null: the lowest train label)"),
            "max": Opt((int, float), None, "highest score of the scale (null: the highest train label)"),
        },
        "the scale of the training labels; calibrated scores are clipped to [min, max]",
    ),
    "loss": mapping(
        {
            "plcc": num(1.0, "weight of the PLCC loss", min=0),
            "rank": num(0.0, "weight of the pairwise rank loss", min=0),
            "contrastive": num(0.3, "weight of KSVQE's distortion contrastive loss", min=0),
        },
        "loss weights",
    ),
    "tensorboard": boolean(False, "write TensorBoard scalars (per step: loss, lr; per epoch: metrics) "
                           "under <log_dir>/tensorboard/<name>"),
    "wandb": mapping({"project_name": string(None, "")}, "",),
    "optimizer": mapping(
        {
            "lr": num(3e-5, "AdamW base learning rate", min=0, min_exclusive=True),
            "backbone_lr_mult": num(1.0, "LR multiplier of modules whose name contains 'backbone'", min=0),
            "wd": num(0.05, "AdamW weight decay", min=0),
            "wd_norm_bias": boolean(False, "also decay norm weights and biases"),
        },
        "optimiser",
    ),
    "load_path": string(None, "checkpoint training starts from, loaded after building the model (may be partial, "
                              "e.g. a pretrained backbone); never used to score; a bare file name not in the "
                              "working folder is looked for where weights are (docs/weights.md)"),
    "test_load_path": string(None, "checkpoint test.py and load_scorer score with (unless --checkpoint); it must "
                                   "fill every model key; found like load_path"),
    "data": mapping(None, "datasets: train, val, test", each=DATA_SPEC),
    "model": MODEL,
}
SCHEMA["wandb"].deprecated = "no wandb logging; ignored"


def validate(raw: Mapping[str, Any], source: str = "<config>") -> Config:
    """The whole config checked (schema, registries, views) with defaults filled in; any problem
    is a ConfigError naming `source`, the key path and the nearest valid name."""
    if isinstance(raw, Mapping) and isinstance(raw.get("amp"), bool):  # YAML 1.1 reads a bare off as false
        if raw["amp"]:
            raise ConfigError(f"{source}: key 'amp' is true; say which precision: bf16 or fp16 (or off)")
        raw = {**raw, "amp": "off"}
    warnings: list[str] = []
    data = validate_mapping(raw, SCHEMA, "", source, warnings)
    check_data(data["data"], raw, source)
    check_model(data["model"], source, warnings)
    scale = data["mos_scale"]
    if scale["min"] is not None and scale["max"] is not None and scale["min"] >= scale["max"]:
        raise ConfigError(f"{source}: 'mos_scale.min' ({scale['min']}) must be below 'mos_scale.max' ({scale['max']})")
    return Config(data, source, warnings)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    source = str(path) + (f" (with --set {' '.join(overrides)})" if overrides else "")
    return validate(apply_overrides(raw, overrides), source)


def describe_schema() -> str:
    """Markdown table of every key (for docs/configuration.md)."""
    return "\n".join(["| key | type | default | meaning |", "|---|---|---|---|"] + schema_rows(SCHEMA))
