"""The config schema of `model:` (every key documented once) and its check against the
backbone and head registries: `model.args.<key>` must be a registered backbone, its `backbone` /
`head` arguments keyword arguments of the backbone's / head's constructor."""
from __future__ import annotations

from kvq.core.config import ConfigError, Opt, boolean, constructor_args, mapping, string
from kvq.core.registry import did_you_mean
from models.registry import BACKBONES, HEADS

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

MODEL = mapping(
    {
        "type": string(None, "optional, informative (the backbones are the keys of model.args); when "
                       "given, each comma-separated name must be a key of model.args, as in the "
                       "reference's configs (KSVQE, simpleVQA)"),
        "args": mapping(None, "<registered backbone> -> {backbone: ..., head: ...}", each=MODEL_ENTRY),
    },
    "model",
)


def check_model(model: dict, source: str, warnings: list[str]) -> None:
    """model.args keys are backbones, their arguments the constructors' (cleaned in place)."""
    if not model["args"]:
        raise ConfigError(f"{source}: 'model.args' must name at least one backbone (e.g. KSVQE, simpleVQA)")
    for key, entry in model["args"].items():
        path = f"model.args.{key}"
        if key not in BACKBONES:
            raise ConfigError(f"{source}: '{path}': unknown backbone{did_you_mean(key, BACKBONES.names())}; "
                              f"known: {', '.join(BACKBONES.names())}")
        cls = BACKBONES.get(key)
        entry["backbone"] = constructor_args(cls, entry["backbone"], f"{path}.backbone", source, warnings)
        entry["head"] = constructor_args(HEADS.get(cls.head_type), entry["head"], f"{path}.head", source, warnings)
    if model["type"] is not None:
        for name in (n.strip() for n in model["type"].split(",")):
            if name not in model["args"]:
                raise ConfigError(f"{source}: 'model.type' names '{name}', which is not a key of model.args "
                                  f"({', '.join(model['args'])}){did_you_mean(name, model['args'])}")
