"""Command-line pieces shared by every entry point: parser (help formatter, -v/-q), logging,
warning filters, exit statuses, error handling.

Imports only the standard library at module level, so that `ENTRY -h` is answered before torch
is imported (entry points import their heavy modules in main(), after parse_args).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

if TYPE_CHECKING:
    from kvq.config import Config
    from kvq.engine.trainer import TrainOptions

# Exit statuses of every command-line entry point (docs/commands.md "Exit statuses").
EXIT_OK = 0  # everything done
EXIT_FAILURE = 1  # an unexpected failure (a bug, out of memory, ...): a traceback is printed
EXIT_USAGE = 2  # bad usage, config, input file, weights or GPU: a message names what is wrong
EXIT_PARTIAL = 3  # done, but some videos failed (they are listed)
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT): one line says what was kept

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Deprecation warnings that third-party code prints on every run and a user cannot act on:
# (category, message regex, module regex of the code that calls warnings.warn).
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # fvcore (imported by pytorchvideo) calls torch.jit.script at import time
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script"),
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout (the module docstrings) and appends `(default: X)` to every
    option help that has a default worth showing (not None / False, not already mentioned)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
        if shown and "%(default)" not in text and "default" not in text and (
                action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            text += " (default: %(default)s)"
        return text


def make_parser(description: Optional[str]) -> argparse.ArgumentParser:
    """An ArgumentParser with the shared help formatter and -v/--verbose, -q/--quiet.

    Flag convention of every entry point (docs/commands.md "Flags"): long options are spelled with
    underscores (--gpu_id, --resume_from, --num_workers: the reference's style); a spelling that an
    earlier version or the reference accepted (--max-frames, --gpu_ids, --workers) stays as an
    alias, given as a second option string of the same argument."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def log_level(args: argparse.Namespace) -> int:
    """logging level of the -v/-q flags: DEBUG, WARNING, else INFO."""
    return logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO


def filter_third_party_warnings() -> None:
    """Silence the known third-party deprecation warnings (THIRD_PARTY_WARNINGS); others still show."""
    for category, message, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _add_handler(handler: logging.Handler) -> None:
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.kvq_cli = True  # type: ignore[attr-defined]  # replaced by the next setup_logging
    logging.getLogger().addHandler(handler)


def setup_logging(level: int = logging.INFO, rank: int = 0) -> None:
    """The one logging set-up of every CLI, called right after parse_args: messages at `level`
    and above on stderr (ranks other than 0: warnings and errors only). Replaces the handlers of
    an earlier call (and their log files), keeps any other (e.g. pytest's). Also filters the
    known third-party warnings; at DEBUG, FFmpeg's and decord's messages are shown too."""
    filter_third_party_warnings()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "kvq_cli", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level if rank == 0 else max(level, logging.WARNING))
    _add_handler(logging.StreamHandler())
    if level <= logging.DEBUG:  # -v: the decoders' own messages too (quiet by default)
        from datasets.decoding import set_decoder_verbosity

        set_decoder_verbosity(True)


def log_to_file(log_dir: Path, name: str, rank: int = 0) -> Optional[Path]:
    """Also write the log to `log_dir/<name>_<time>_<pid>.log` (rank 0 only); its path."""
    if rank != 0:
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}.log"
    _add_handler(logging.FileHandler(path))
    return path


def add_config_args(parser: argparse.ArgumentParser, default: str | None = None, optional: bool = False) -> None:
    """-o/--opt (required unless it has a `default` or is `optional`), --set, --gpu_id."""
    parser.add_argument("-o", "--opt", default=default, required=default is None and not optional,
                        help="YAML config file (see docs/configuration.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set optimizer.lr=1e-4 (repeatable)")
    add_gpu_arg(parser, "GPUs to use, e.g. '0,1', or 'cpu' (default: GPU 0 when CUDA is available, else the "
                        "CPU); a GPU that is not there is an error (exit 2)")


def add_gpu_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """--gpu_id (--gpu_ids, the reference's SlowFast_features.py spelling, is an alias)."""
    parser.add_argument("--gpu_id", "--gpu_ids", dest="gpu_id", default=None, help=help)


def output_folder(text: str) -> str:
    """-r/--resume: a folder; a checkpoint file is a usage error (exit 2)."""
    if Path(text).suffix.lower() in (".pth", ".pt") or Path(text).is_file():
        raise argparse.ArgumentTypeError(f"'{text}' is a file: -r is the output folder (checkpoints, plots); "
                                         f"to continue from a checkpoint, pass --resume_from {text}")
    return text


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by train.py and train_ddp.py (the reference's names kept)."""
    add_config_args(parser)
    parser.add_argument("-t", "--train_set", default=None, help="accepted for compatibility with the reference; unused")
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


def add_ddp_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the commands that run under torchrun (train_ddp.py, scripts/run_splits.py)."""
    parser.add_argument("--sync_bn", action="store_true",
                        help="under torchrun: convert BatchNorm layers to SyncBatchNorm (CUDA only)")
    parser.add_argument("--dist_timeout", type=float, default=None, metavar="MINUTES",
                        help="how long a process waits for the others in a collective before the run fails "
                             "(default: torch's, 10 minutes for NCCL); raise it if validation takes longer")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by torch.distributed.launch without --use_env (LOCAL_RANK is read otherwise)")


def train_options(args: argparse.Namespace, **extra: object) -> "TrainOptions":
    """TrainOptions from the flags of `add_train_args`."""
    from kvq.engine.trainer import TrainOptions

    return TrainOptions(output_dir=Path(args.resume), test_set=args.test_set,
                        resume_from=Path(args.resume_from) if args.resume_from else None, seed=args.seed,
                        log_dir=Path(args.log_dir), progress=not args.no_progress, stop_after=args.stop_after,
                        overwrite=args.overwrite, **extra)


def load(args: argparse.Namespace) -> "Config":
    from kvq.config import load_config

    cfg = load_config(args.opt, args.overrides)
    for w in cfg.warnings:
        logging.getLogger("config").warning("%s", w)
    return cfg


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is the user's to fix (config, files, data, weights, GPUs; exit 2 with the
    message): a `kvq.core.errors.UserError`, or a FileNotFoundError."""
    from kvq.core.errors import UserError

    return isinstance(error, (UserError, FileNotFoundError))


_kept_on_interrupt: list[Callable[[], str]] = []


def on_interrupt(kept: Callable[[], str]) -> None:
    """Say what an interruption (Ctrl-C) keeps: `kept()` is called then, and its text ends the one
    line `run_main` prints (e.g. the last finished epoch's state and how to resume)."""
    _kept_on_interrupt.append(kept)


def _interrupted_line() -> str:
    kept = [text for text in (f() for f in _kept_on_interrupt) if text]
    return "interrupted (Ctrl-C); " + ("; ".join(kept) if kept else
                                       "nothing was written (files are written whole or not at all)")


def run_main(main: Callable[[Sequence[str] | None], int], fast_exit: bool = False) -> None:
    """Run a CLI main and exit with its status; user errors (`is_user_error`) end with a message
    and exit 2, Ctrl-C with one line saying what was kept (`on_interrupt`) and exit 130, anything
    else with a traceback and exit 1.

    fast_exit: once main has returned, flush the logs and standard streams and end the process
    with `os._exit`, skipping the interpreter's teardown of torch's modules (about 1 s on a 2-core
    CPU). Only for commands whose work is finished on return: every file written and closed, no
    worker processes or threads left."""
    try:
        status = main(None)
    except KeyboardInterrupt:
        logging.getLogger("kvq").error("%s", _interrupted_line())
        status = EXIT_INTERRUPTED
    except Exception as e:
        if not is_user_error(e):
            raise
        logging.getLogger("kvq").error("error: %s", e)
        status = EXIT_USAGE
    if fast_exit or status == EXIT_INTERRUPTED:  # no teardown waits on interrupted workers
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
