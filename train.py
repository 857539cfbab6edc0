"""Train a quality model on one process (DataParallel over --gpu_id, or the CPU).

    python train.py -o config/kwai_simpleVQA.yml --gpu_id 0,1 [-r checkpoint/] [--resume_from CKPT]

Exit statuses: docs/commands.md "Exit statuses".
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from kvq.cli import (EXIT_OK, add_train_args, load, log_level, log_to_file, make_parser, run_main, setup_logging,
                     train_options)

log = logging.getLogger("train")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    add_train_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    from kvq.core.device import select_devices
    from kvq.engine.trainer import Trainer

    cfg = load(args)
    log_file = log_to_file(Path(args.log_dir), cfg["name"])
    device, ids = select_devices(args.gpu_id)
    log.info("log file: %s; device %s %s", log_file, device, ids or "")
    kept = Trainer(cfg, train_options(args, device_ids=ids), device).train()
    for tag, metrics in kept.items():
        log.info("kept %s (keep: %s): %s", "model" if tag == "n" else "EMA", cfg["keep"], metrics)
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
