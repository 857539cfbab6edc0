"""Train a quality model on one process (DataParallel over --gpu_id, or the CPU).

    python train.py -o config/kwai_simpleVQA.yml --gpu_id 0,1 [-r checkpoint/] [--resume_from CKPT]
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from kvq.cli import add_config_args, load, run_main
from kvq.device import select_devices
from kvq.trainer import Trainer, TrainOptions, setup_logging

log = logging.getLogger("train")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("-t", "--train_set", default=None, help="accepted for seed compatibility; unused")
    p.add_argument("-t1", "--test_set", default="val-ltest", help="tag in checkpoint file names")
    p.add_argument("-r", "--resume", default="./checkpoint/", help="output folder for checkpoints and plots")
    p.add_argument("--resume_from", default=None, help="training state (*_last.pth) to continue from")
    p.add_argument("--stop_after", type=int, default=None,
                   help="run at most this many epochs now (continue later with --resume_from)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's seed)")
    p.add_argument("--log_dir", default="log", help="folder for the log file")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load(args)
    log_file = setup_logging(Path(args.log_dir), cfg["name"])
    device, ids = select_devices(args.gpu_id)
    log.info("log file: %s; device %s %s", log_file, device, ids or "")
    opts = TrainOptions(output_dir=Path(args.resume), test_set=args.test_set,
                        resume_from=Path(args.resume_from) if args.resume_from else None, seed=args.seed,
                        log_dir=Path(args.log_dir), progress=not args.no_progress,
                        stop_after=args.stop_after, device_ids=ids)
    best = Trainer(cfg, opts, device).train()
    for tag, metrics in best.items():
        log.info("best %s: %s", "model" if tag == "n" else "EMA", metrics)
    return 0


if __name__ == "__main__":
    run_main(main)
