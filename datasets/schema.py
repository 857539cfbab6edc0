"""The config schema of `data:` (dataset arguments and views, every key documented once) and its
check against the dataset registry: `data.<split>.type` must be a registered dataset, and each
view of `sample_types` may hold only the options its dataset reads for it."""
from __future__ import annotations

from typing import Any

from kvq.core.config import REQUIRED, ConfigError, Opt, boolean, integer, mapping, num, raw_at, string
from kvq.core.registry import did_you_mean
from datasets.registry import DATASETS

VIEW = mapping(
    {
        "fragments_h": integer(9, "technical: rows of the fragment grid", min=1),
        "fragments_w": integer(9, "technical: columns of the fragment grid", min=1),
        "fsize_h": integer(32, "technical: mini-patch height in pixels", min=1),
        "fsize_w": integer(32, "technical: mini-patch width in pixels", min=1),
        "aligned": integer(8, "technical: frames that share one set of mini-patch offsets", min=1),
        "clip_len": integer(32, "frames per clip", min=1),
        "frame_interval": integer(1, "stride between sampled frames", min=1),
        "num_clips": integer(1, "clips per video (test: scored separately and averaged)", min=1),
        "t_frag": Opt((int,), None, "temporal segments; its presence selects the segment sampler form", min=1),
        "size_h": integer(112, "aesthetic/resize view height (KSVQE: the CLIP view)", min=1),
        "size_w": integer(112, "aesthetic/resize view width (KSVQE: the CLIP view)", min=1),
        "resize": Opt((int,), 520, "simpleVQA: squash-resize side before cropping; null: the frames' native size "
                      "(no resize, no crop: crop null too; videos of different sizes then go one per batch, "
                      "as with cache_features)", min=1),
        "crop": Opt((int,), 448, "simpleVQA: crop side (random in training, centre at test); null: no crop", min=1),
        "random_crop": boolean(False, "", deprecated="stored by the reference without effect; ignored"),
        "arp": boolean(False, "", deprecated="aspect-ratio-preserving resize; not supported, must be false"),
    },
    "options of one view; the view name's prefix selects the view: technical*, aesthetic*, simpleVQA*; "
    "a view holds only the options it reads (the sampler's: clip_len, frame_interval, num_clips, t_frag; "
    "technical: fragments_*, fsize_*, aligned, and with ViewDecompositionDataset_KVQ size_h/size_w for the "
    "CLIP view; aesthetic: size_h/size_w; simpleVQA: resize, crop)",
)
DEPRECATED_VIEW_KEYS = frozenset(k for k, opt in VIEW.children.items() if opt.deprecated)

DATA_ARGS = mapping(
    {
        "phase": string("test", "'train' = random sampling/crops; anything else = deterministic",
                        nullable=False),
        "anno_file": string(REQUIRED, "annotation file (csv/txt); format detected, see docs/data.md", nullable=False),
        "anno_format": string("auto", "auto | kvq_csv | ksvqe | dover | unlabeled", nullable=False,
                              choices=["auto", "kvq_csv", "ksvqe", "dover", "unlabeled"]),
        "data_prefix": string("", "folder the annotation's file names are relative to", nullable=False),
        "allow_repeats": boolean(False, "a video may be listed more than once in this annotation file (e.g. "
                                 "oversampling); otherwise a repeat is an error naming both lines (a video in two "
                                 "splits is always an error)"),
        "data_prefix_3D": string(None, "SimpleVQA: folder of cached SlowFast features (<video_name>/...); "
                                 "null: none (for a backbone with motion_channels: 0)"),
        "feature_type": string("SlowFast", "SimpleVQA: Slow (2048) | Fast (256) | SlowFast (2304)",
                               choices=["Slow", "Fast", "SlowFast"], nullable=False),
        "normalization": string("imagenet", "SimpleVQA: 'imagenet' (on [0,1], correct), 'reference_0_255' "
                                "(the reference's, on 0-255 values; for checkpoints trained with it) or 'inception' "
                                "(mean = std = 0.5 on [0,1]); must "
                                "fit the mean/std of the backbone's weight record (checked before any work)",
                                choices=["imagenet", "reference_0_255", "inception"],
                                nullable=False),
        "decoder": string("decord", "primary decoder: decord | pyav (the other one is the fallback)",
                          choices=["decord", "pyav"], nullable=False),
        "allow_truncated": boolean(False, "score videos that decode to fewer frames than their container "
                                   "declares (false: such a video is an error, 'decoded N of M frames')"),
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


def check_data(data: dict, raw: Any, source: str) -> None:
    """Splits, dataset types and views (each holds only the options its dataset reads for it)."""
    for split, spec in data.items():
        if split not in ("train", "val", "test"):
            raise ConfigError(f"{source}: unknown key 'data.{split}'{did_you_mean(split, ['train', 'val', 'test'])}")
        if spec["type"] not in DATASETS:
            raise ConfigError(f"{source}: 'data.{split}.type' is {spec['type']!r}, not a dataset"
                              f"{did_you_mean(spec['type'], DATASETS.names())}; known: {', '.join(DATASETS.names())}")
        dataset = DATASETS.get(spec["type"])
        views = spec["args"]["sample_types"]
        for view, opts in views.items():
            path = f"data.{split}.args.sample_types.{view}"
            if not view.startswith(("technical", "aesthetic", "simpleVQA")):
                raise ConfigError(f"{source}: '{path}': view names must start with technical, aesthetic or simpleVQA")
            reads = dataset.view_options(view) | DEPRECATED_VIEW_KEYS
            for key in raw_at(raw, "data", split, "args", "sample_types", view):
                if key not in reads:
                    raise ConfigError(f"{source}: '{path}.{key}' does not apply to view '{view}' of {spec['type']}"
                                      f"{did_you_mean(key, reads)}; it reads: {', '.join(sorted(reads))}")
            opts = views[view] = {k: v for k, v in opts.items() if k in reads}
            if opts["arp"]:
                raise ConfigError(f"{source}: '{path}.arp' is not supported")
            if opts.get("t_frag") and opts["clip_len"] % opts["t_frag"]:
                raise ConfigError(f"{source}: '{path}': clip_len {opts['clip_len']} is not a multiple of "
                                  f"t_frag {opts['t_frag']}")
