"""YAML configs: the one documented schema, validation, and `--set a.b=c` overrides.

Every key is documented once, here (`SCHEMA`). Loading validates the whole file before anything
is built: an unknown key is an error naming the file, the key path and the nearest valid key; a
wrong type or a missing required key is an error too. Defaults are filled in, so code reads
`cfg["batch_size"]` without `.get`. Beyond the schema, the registries decide (`_registries`):
`model.args.<key>` must be a registered backbone, its `backbone` / `head` arguments keyword
arguments of the backbone's / head's constructor, `data.<split>.type` a registered dataset, and
each view of `sample_types` may hold only the options its dataset reads for it.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from kvq.registry import BACKBONES, DATASETS, Registry, did_you_mean

REQUIRED = object()


class ConfigError(ValueError):
    """A config file (or override) that does not fit the schema."""


@dataclass
class Opt:
    """One config key: accepted types, default (REQUIRED if none), doc, allowed values."""

    types: tuple
    default: Any = None
    doc: str = ""
    choices: Optional[Sequence[Any]] = None
    children: Optional[dict[str, "Opt"]] = None  # fixed sub-keys
    each: Optional["Opt"] = None  # mapping with free keys, each value of this schema
    nullable: bool = True
    deprecated: str = ""  # accepted for reference configs; says what happens


def num(default: Any = REQUIRED, doc: str = "", **kw: Any) -> Opt:
    return Opt((int, float), default, doc, nullable=False, **kw)


def integer(default: Any = REQUIRED, doc: str = "", **kw: Any) -> Opt:
    return Opt((int,), default, doc, nullable=False, **kw)


def boolean(default: Any = REQUIRED, doc: str = "", **kw: Any) -> Opt:
    return Opt((bool,), default, doc, nullable=False, **kw)


def string(default: Any = REQUIRED, doc: str = "", nullable: bool = True, **kw: Any) -> Opt:
    return Opt((str,), default, doc, nullable=nullable, **kw)


def mapping(children: Optional[dict[str, Opt]] = None, doc: str = "", each: Optional[Opt] = None) -> Opt:
    return Opt((dict,), {}, doc, children=children, each=each)


VIEW = mapping(
    {
        "fragments_h": integer(9, "technical: rows of the fragment grid"),
        "fragments_w": integer(9, "technical: columns of the fragment grid"),
        "fsize_h": integer(32, "technical: mini-patch height in pixels"),
        "fsize_w": integer(32, "technical: mini-patch width in pixels"),
        "aligned": integer(8, "technical: frames that share one set of mini-patch offsets"),
        "clip_len": integer(32, "frames per clip"),
        "frame_interval": integer(1, "stride between sampled frames"),
        "num_clips": integer(1, "clips per video (test: scored separately and averaged)"),
        "t_frag": Opt((int,), None, "temporal segments; its presence selects the segment sampler form"),
        "size_h": integer(112, "aesthetic/resize view height (KSVQE: the CLIP view)"),
        "size_w": integer(112, "aesthetic/resize view width (KSVQE: the CLIP view)"),
        "resize": Opt((int,), 520, "simpleVQA: squash-resize side before cropping; null: the frames' native size "
                      "(no resize, no crop: crop null too; videos of different sizes then go one per batch, "
                      "as with cache_features)"),
        "crop": Opt((int,), 448, "simpleVQA: crop side (random in training, centre at test); null: no crop"),
        "random_crop": boolean(False, "", deprecated="stored by the reference without effect; ignored"),
        "arp": boolean(False, "", deprecated="aspect-ratio-preserving resize; not supported, must be false"),
    },
    "options of one view; the view name's prefix selects the view: technical*, aesthetic*, simpleVQA*; "
    "a view holds only the options it reads (the sampler's: clip_len, frame_interval, num_clips, t_frag; "
    "technical: fragments_*, fsize_*, aligned, and with ViewDecompositionDataset_KVQ size_h/size_w for the "
    "CLIP view; aesthetic: size_h/size_w; simpleVQA: resize, crop)",
)
OLD_REFERENCE_NORMALIZATION = "seed_0_255"  # earlier name of 'reference_0_255' (configs, checkpoints)

DEPRECATED_VIEW_KEYS = frozenset(k for k, opt in VIEW.children.items() if opt.deprecated)

DATA_ARGS = mapping(
    {
        "phase": string("test", "'train' = random sampling/crops; anything else = deterministic",
                        nullable=False),
        "anno_file": string(REQUIRED, "annotation file (csv/txt); format detected, see docs/data.md", nullable=False),
        "anno_format": string("auto", "auto | kvq_csv | ksvqe | dover | unlabeled", nullable=False,
                              choices=["auto", "kvq_csv", "ksvqe", "dover", "unlabeled"]),
        "data_prefix": string("", "folder the annotation's file names are relative to", nullable=False),
        "data_prefix_3D": string(None, "SimpleVQA: folder of cached SlowFast features (<video_name>/...); "
                                 "null: none (for a backbone with motion_channels: 0)"),
        "feature_type": string("SlowFast", "SimpleVQA: Slow (2048) | Fast (256) | SlowFast (2304)",
                               choices=["Slow", "Fast", "SlowFast"], nullable=False),
        "normalization": string("imagenet", "SimpleVQA: 'imagenet' (on [0,1], correct), 'reference_0_255' "
                                "(the reference's, on 0-255 values; for checkpoints trained with it; the older "
                                "name 'seed_0_255' is accepted) or 'inception' (mean = std = 0.5 on [0,1]); must "
                                "fit the mean/std of the backbone's weight record (checked before any work)",
                                choices=["imagenet", "reference_0_255", OLD_REFERENCE_NORMALIZATION, "inception"],
                                nullable=False),
        "decoder": string("decord", "primary decoder: decord | pyav (the other one is the fallback)",
                          choices=["decord", "pyav"], nullable=False),
        "sample_types": mapping(None, "view name -> view options", each=VIEW),
        "weight": num(0.5, "", deprecated="stored by the reference without effect; ignored"),
        "data_backend": string("disk", "", deprecated="only 'disk' is supported", choices=["disk"]),
        "augment": boolean(False, "", deprecated="stored by the reference without effect; ignored"),
        "random_crop": boolean(False, "", deprecated="stored by the reference without effect; ignored"),
    },
    "dataset arguments",
)

DATA_SPEC = mapping(
    {
        "type": string(REQUIRED, "registered dataset class (ViewDecompositionDataset_KVQ, "
                       "ViewDecompositionDataset_add_forSimpleVQA)", nullable=False),
        "args": DATA_ARGS,
    }
)

MODEL_ENTRY = mapping(
    {
        "backbone": mapping(None, "backbone constructor arguments (checked against the backbone's "
                            "constructor; null = its default)", each=Opt((object,), None)),
        "head": mapping(None, "head arguments (checked against the head's constructor: in_channels, "
                        "hidden_channels, and dropout_ratio for VQAHead; SimpleVQAHead standardize: inputs "
                        "standardised with the cached train features' mean/std, needs cache_features)", each=Opt((object,), None)),
        "backbone_preserve_keys": string(None, "", deprecated="DOVER remnant; ignored"),
        "divide_head": boolean(False, "", deprecated="DOVER remnant; ignored"),
    }
)

SCHEMA: dict[str, Opt] = {
    "name": string(REQUIRED, "run name: prefix of checkpoint files", nullable=False),
    "num_epochs": integer(50, "training epochs"),
    "l_num_epochs": integer(0, "extra epochs counted in the LR schedule length only (reference)"),
    "warmup_epochs": num(2.5, "linear LR warm-up length in (fractional) epochs; 0 = none"),
    "ema": boolean(True, "keep an exponential moving average of the weights (validated too)"),
    "ema_decay": num(0.999, "EMA decay per step"),
    "save_model": boolean(True, "write checkpoints"),
    "keep": string("best", "weights of the kept checkpoints (<name>_head_<test_set>_{n,s}_finetuned.pth, model "
                   "and EMA; what test.py, load_scorer and run_splits.py score): 'best' = the val epoch of best "
                   "SROCC+PLCC; 'last' = after the final epoch (still validated and reported; a val split too "
                   "small to pick an epoch on, docs/demo.md)", choices=["best", "last"], nullable=False),
    "batch_size": integer(4, "training batch size (per process under DDP)"),
    "num_workers": integer(6, "data-loader worker processes"),
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
                              "many (null = all)"),
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
            "plcc": num(1.0, "weight of the PLCC loss"),
            "rank": num(0.0, "weight of the pairwise rank loss"),
            "contrastive": num(0.3, "weight of KSVQE's distortion contrastive loss"),
        },
        "loss weights",
    ),
    "tensorboard": boolean(False, "write TensorBoard scalars (per step: loss, lr; per epoch: metrics) "
                           "under <log_dir>/tensorboard/<name>"),
    "wandb": mapping({"project_name": string(None, "")}, "",),
    "optimizer": mapping(
        {
            "lr": num(3e-5, "AdamW base learning rate"),
            "backbone_lr_mult": num(1.0, "LR multiplier of modules whose name contains 'backbone'"),
            "wd": num(0.05, "AdamW weight decay"),
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
    "model": mapping(
        {
            "type": string(None, "optional, informative (the backbones are the keys of model.args); when "
                           "given, each comma-separated name must be a key of model.args, as in the "
                           "reference's configs (KSVQE, simpleVQA)"),
            "args": mapping(None, "<registered backbone> -> {backbone: ..., head: ...}", each=MODEL_ENTRY),
        },
        "model",
    ),
}
SCHEMA["wandb"].deprecated = "no wandb logging; ignored"


def _type_name(types: tuple) -> str:
    if set(types) == {int, float}:
        return "number"
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "mapping", object: "any"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(value: Any, opt: Opt) -> bool:
    if value is None:
        return opt.nullable
    if object in opt.types:
        return True
    if isinstance(value, bool) and bool not in opt.types:
        return False
    return isinstance(value, opt.types)


def _validate(node: Any, schema: Mapping[str, Opt], path: str, source: str, warnings: list[str]) -> dict:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{source}: '{path or '<top>'}' must be a mapping, got {type(node).__name__}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in schema:
            raise ConfigError(f"{source}: unknown key '{full}'{did_you_mean(str(key), schema)}")
        out[key] = _validate_value(value, schema[key], full, source, warnings)
    for key, opt in schema.items():
        full = f"{path}.{key}" if path else key
        if key in out:
            continue
        if opt.default is REQUIRED:
            raise ConfigError(f"{source}: missing required key '{full}' ({opt.doc})")
        if opt.children is not None:
            out[key] = _validate({}, opt.children, full, source, warnings)
        else:
            out[key] = copy.deepcopy(opt.default)
    return out


def _validate_value(value: Any, opt: Opt, path: str, source: str, warnings: list[str]) -> Any:
    if isinstance(value, str) and float in opt.types:  # PyYAML reads 3e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if not _check_type(value, opt):
        raise ConfigError(f"{source}: key '{path}' must be {_type_name(opt.types)}, got {value!r}")
    if opt.deprecated and value not in (None, opt.default, {}):
        warnings.append(f"{source}: '{path}': {opt.deprecated}")
    if opt.choices is not None and value is not None and value not in opt.choices:
        raise ConfigError(f"{source}: key '{path}' is {value!r}; allowed: {', '.join(map(str, opt.choices))}"
                          f"{did_you_mean(str(value), map(str, opt.choices))}")
    if isinstance(value, float) and int in opt.types and float not in opt.types:
        raise ConfigError(f"{source}: key '{path}' must be an integer, got {value!r}")
    if value is None and opt.children is not None:
        value = {}
    if opt.children is not None:
        return _validate(value, opt.children, path, source, warnings)
    if opt.each is not None:
        value = value or {}
        return {k: _validate_value(v, opt.each, f"{path}.{k}", source, warnings) for k, v in value.items()}
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=c' -> (['a', 'b'], yaml value of c)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Set each 'a.b=c' in the raw (unvalidated) config dict."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return raw


class Config(dict):
    """A validated config: a plain dict plus where it came from (`source`) and `warnings`."""

    def __init__(self, data: dict, source: str, warnings: list[str]) -> None:
        super().__init__(data)
        self.source = source
        self.warnings = warnings


def _registries() -> tuple[Registry, Mapping[str, type], Registry]:
    """(BACKBONES, HEADS, DATASETS), filled.

    kvq.config is a base layer: models/ and datasets/ import it, and they register their classes
    in kvq.registry when imported (which imports torch). BACKBONES and DATASETS import them on
    their first lookup, and HEADS is imported here, when a config is validated, never at the top
    of this module: `import kvq.config` stays cheap (`-h`, `describe_schema`) and has no import
    cycle, and every config is checked against the full registries before anything is built."""
    from models.heads import HEADS

    return BACKBONES, HEADS, DATASETS


def constructor_args(cls: type, args: Mapping[str, Any], path: str, source: str,
                     warnings: list[str]) -> dict[str, Any]:
    """`args` (the config mapping at `path`) checked against the constructor of `cls` (a backbone
    or a head): null values take the constructor's default (left out); keys in the class's
    `legacy_args` (reference keys without effect) are left out with a warning; any other key that
    is not a keyword argument is a ConfigError naming the nearest valid one."""
    params = [n for n, p in inspect.signature(cls.__init__).parameters.items()
              if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    legacy: Mapping[str, str] = getattr(cls, "legacy_args", {})
    out = {}
    for name, value in args.items():
        if name in legacy:
            warnings.append(f"{source}: '{path}.{name}' is ignored: {legacy[name]}")
        elif name not in params:
            raise ConfigError(f"{source}: unknown key '{path}.{name}'{did_you_mean(name, params)}; "
                              f"valid: {', '.join(params)}")
        elif value is not None:
            out[name] = value
    return out


def _raw(node: Any, *keys: str) -> Mapping[str, Any]:
    """The raw (unvalidated) mapping under `keys`; {} where it is absent or null."""
    for key in keys:
        node = (node or {}).get(key)
    return node or {}


def _check_model(model: dict, backbones: Registry, heads: Mapping[str, type], source: str,
                 warnings: list[str]) -> None:
    """model.args keys are backbones, their arguments the constructors' (cleaned in place)."""
    if not model["args"]:
        raise ConfigError(f"{source}: 'model.args' must name at least one backbone (e.g. KSVQE, simpleVQA)")
    for key, entry in model["args"].items():
        path = f"model.args.{key}"
        if key not in backbones:
            raise ConfigError(f"{source}: '{path}': unknown backbone{did_you_mean(key, backbones.names())}; "
                              f"known: {', '.join(backbones.names())}")
        cls = backbones.get(key)
        entry["backbone"] = constructor_args(cls, entry["backbone"], f"{path}.backbone", source, warnings)
        entry["head"] = constructor_args(heads[cls.head_type], entry["head"], f"{path}.head", source, warnings)
    if model["type"] is not None:
        for name in (n.strip() for n in model["type"].split(",")):
            if name not in model["args"]:
                raise ConfigError(f"{source}: 'model.type' names '{name}', which is not a key of model.args "
                                  f"({', '.join(model['args'])}){did_you_mean(name, model['args'])}")


def _check_data(data: dict, raw: Any, datasets: Registry, source: str, stored: bool = False) -> None:
    """Splits, dataset types and views (each holds only the options its dataset reads for it).
    stored: a config saved in a checkpoint by an earlier version, which filled every view key with
    its default: such keys that do not apply are dropped instead of refused."""
    for split, spec in data.items():
        if split not in ("train", "val", "test"):
            raise ConfigError(f"{source}: unknown key 'data.{split}'{did_you_mean(split, ['train', 'val', 'test'])}")
        if spec["type"] not in datasets:
            raise ConfigError(f"{source}: 'data.{split}.type' is {spec['type']!r}, not a dataset"
                              f"{did_you_mean(spec['type'], datasets.names())}; known: {', '.join(datasets.names())}")
        dataset = datasets.get(spec["type"])
        views = spec["args"]["sample_types"]
        for view, opts in views.items():
            path = f"data.{split}.args.sample_types.{view}"
            if not view.startswith(("technical", "aesthetic", "simpleVQA")):
                raise ConfigError(f"{source}: '{path}': view names must start with technical, aesthetic or simpleVQA")
            reads = dataset.view_options(view) | DEPRECATED_VIEW_KEYS
            for key, value in _raw(raw, "data", split, "args", "sample_types", view).items():
                if key not in reads and not (stored and value == VIEW.children[key].default):
                    raise ConfigError(f"{source}: '{path}.{key}' does not apply to view '{view}' of {spec['type']}"
                                      f"{did_you_mean(key, reads)}; it reads: {', '.join(sorted(reads))}")
            opts = views[view] = {k: v for k, v in opts.items() if k in reads}
            if opts["arp"]:
                raise ConfigError(f"{source}: '{path}.arp' is not supported")
            if opts.get("t_frag") and opts["clip_len"] % opts["t_frag"]:
                raise ConfigError(f"{source}: '{path}': clip_len {opts['clip_len']} is not a multiple of "
                                  f"t_frag {opts['t_frag']}")


def validate(raw: Mapping[str, Any], source: str = "<config>", stored: bool = False) -> Config:
    """The whole config checked (schema, registries, views) with defaults filled in; any problem
    is a ConfigError naming `source`, the key path and the nearest valid name. stored: the config
    comes from a checkpoint (see `_check_data`)."""
    if isinstance(raw, Mapping) and isinstance(raw.get("amp"), bool):  # YAML 1.1 reads a bare off as false
        if raw["amp"]:
            raise ConfigError(f"{source}: key 'amp' is true; say which precision: bf16 or fp16 (or off)")
        raw = {**raw, "amp": "off"}
    warnings: list[str] = []
    data = _validate(raw, SCHEMA, "", source, warnings)
    backbones, heads, datasets = _registries()
    _check_data(data["data"], raw, datasets, source, stored)
    for spec in data["data"].values():
        if spec["args"]["normalization"] == OLD_REFERENCE_NORMALIZATION:
            spec["args"]["normalization"] = "reference_0_255"
    _check_model(data["model"], backbones, heads, source, warnings)
    max_videos = data["calibration"]["max_videos"]
    if max_videos is not None and max_videos < 2:
        raise ConfigError(f"{source}: 'calibration.max_videos' must be at least 2 (null = all), got {max_videos}")
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
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def walk(schema: Mapping[str, Opt], prefix: str) -> None:
        for key, opt in schema.items():
            full = f"{prefix}{key}"
            default = "required" if opt.default is REQUIRED else ("" if opt.children or opt.each else repr(opt.default))
            doc = opt.doc + (f" (reference key: {opt.deprecated})" if opt.deprecated else "")
            if opt.choices:
                doc += f" [{', '.join(map(str, opt.choices))}]"
            rows.append(f"| `{full}` | {_type_name(opt.types)} | {default} | {doc} |")
            if opt.children:
                walk(opt.children, full + ".")
            elif opt.each is not None and opt.each.children:
                walk(opt.each.children, full + ".<name>.")

    walk(SCHEMA, "")
    return "\n".join(rows)
