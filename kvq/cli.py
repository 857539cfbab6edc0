"""Command-line pieces shared by train.py, train_ddp.py and test.py."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from kvq.config import Config, ConfigError, load_config


def add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("-o", "--opt", default=default, required=default is None,
                        help="YAML config file (see README: configuration)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--gpu_id", default=None,
                        help="GPUs to use, e.g. '0,1'; 'cpu' (or no CUDA on the machine) runs on the CPU")


def load(args: argparse.Namespace) -> Config:
    cfg = load_config(args.opt, args.overrides)
    for w in cfg.warnings:
        logging.getLogger("config").warning("%s", w)
    return cfg


def run_main(main: Callable[[Sequence[str] | None], int]) -> None:
    """Run a CLI main; user errors (config, files, data) end with a message and exit 2."""
    from datasets.annotations import AnnotationError
    from datasets.decoding import VideoDecodeError
    from datasets.features import MissingFeatureError
    from kvq.checkpoint import CheckpointMismatchError
    from kvq.weights import MissingWeightsError

    try:
        sys.exit(main(None))
    except (ConfigError, AnnotationError, VideoDecodeError, MissingFeatureError, CheckpointMismatchError,
            MissingWeightsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
