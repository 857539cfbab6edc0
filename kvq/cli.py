"""Command-line pieces shared by train.py, train_ddp.py and test.py."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from kvq.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from kvq.trainer import TrainOptions

# Exit statuses of every command-line entry point (documented in the README).
EXIT_OK = 0  # everything done
EXIT_FAILURE = 1  # an unexpected failure (a bug, out of memory, ...): a traceback is printed
EXIT_USAGE = 2  # bad usage, config, input file or weights: a message names what is wrong
EXIT_PARTIAL = 3  # done, but some videos failed (they are listed)


def add_config_args(parser: argparse.ArgumentParser, default: str | None = None, optional: bool = False) -> None:
    """-o/--opt (required unless it has a `default` or is `optional`), --set, --gpu_id."""
    parser.add_argument("-o", "--opt", default=default, required=default is None and not optional,
                        help="YAML config file (see README: configuration)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--gpu_id", default=None,
                        help="GPUs to use, e.g. '0,1'; 'cpu' (or no CUDA on the machine) runs on the CPU")


def output_folder(text: str) -> str:
    """-r/--resume: a folder; a checkpoint file is a usage error (exit 2)."""
    if Path(text).suffix.lower() in (".pth", ".pt") or Path(text).is_file():
        raise argparse.ArgumentTypeError(f"'{text}' is a file: -r is the output folder (checkpoints, plots); "
                                         f"to continue from a checkpoint, pass --resume_from {text}")
    return text


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by train.py and train_ddp.py (the reference's names kept)."""
    add_config_args(parser)
    parser.add_argument("-t", "--train_set", default=None, help="accepted for seed compatibility; unused")
    parser.add_argument("-t1", "--test_set", default="val-ltest", help="tag in checkpoint file names")
    parser.add_argument("-r", "--resume", default="./checkpoint/", type=output_folder,
                        help="output folder for checkpoints and plots")
    parser.add_argument("--resume_from", default=None, help="training state (*_last.pth) to continue from")
    parser.add_argument("--overwrite", action="store_true",
                        help="train into an output folder that holds checkpoints of this run's name (replaced)")
    parser.add_argument("--stop_after", type=int, default=None,
                        help="run at most this many epochs now (continue later with --resume_from)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's seed)")
    parser.add_argument("--log_dir", default="log", help="folder for the log file")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")


def train_options(args: argparse.Namespace, **extra: object) -> "TrainOptions":
    """TrainOptions from the flags of `add_train_args`."""
    from kvq.trainer import TrainOptions

    return TrainOptions(output_dir=Path(args.resume), test_set=args.test_set,
                        resume_from=Path(args.resume_from) if args.resume_from else None, seed=args.seed,
                        log_dir=Path(args.log_dir), progress=not args.no_progress, stop_after=args.stop_after,
                        overwrite=args.overwrite, **extra)


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
        logging.getLogger("kvq").error("error: %s", e)
        sys.exit(2)
