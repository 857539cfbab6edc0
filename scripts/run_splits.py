"""The n-split protocol: repeated grouped train/val/test splits of a config's labelled videos.

    python scripts/run_splits.py -o CONFIG --splits 10 [--val_frac 0.1 --test_frac 0.2] [--seed S] [--out DIR]
    torchrun --nproc_per_node=4 scripts/run_splits.py -o CONFIG --splits 10     # each split trained with DDP

Pools the labelled videos of data.train/val/test, makes `--splits` random splits in which no
group (the annotation's `group` column) is in two parts, trains each split with the config
(train.py's engine), keeps the checkpoint of the best val epoch, or of the final one with config
`keep: last` (model or EMA, by val SROCC+PLCC), and scores the test part with it once. Prints and writes test SROCC/PLCC/KROCC/RMSE per split,
median and mean +- std (results.csv, results_box.png). Run it again to resume: finished splits
are skipped, an interrupted one continues from its last epoch. Exit statuses: docs/commands.md "Exit statuses".
"""
from __future__ import annotations

import argparse
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from datasets.splits import GROUP_BY
from kvq.cli import (EXIT_OK, add_config_args, add_ddp_args, load, log_level, log_to_file, make_parser, run_main,
                     setup_logging)

log = logging.getLogger("run_splits")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    add_config_args(p)
    p.add_argument("--splits", type=int, default=10, help="number of random splits")
    p.add_argument("--val_frac", "--val-frac", type=float, default=0.1, help="fraction of the videos in val")
    p.add_argument("--test_frac", "--test-frac", type=float, default=0.2, help="fraction of the videos in test")
    p.add_argument("--seed", type=int, default=None, help="seed of the splits (default: the config's seed)")
    p.add_argument("--out", default=None, help="output folder (default runs/splits/<config name>)")
    p.add_argument("--group_by", "--group-by", default="group", choices=GROUP_BY,
                   help="group: the annotation's group column; cls_label: the ksvqe lists' "
                        "cls_label; none: every video is its own group")
    add_ddp_args(p)
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.splits < 1:
        p.error("--splits must be at least 1")
    if not (0 < args.val_frac and 0 < args.test_frac and args.val_frac + args.test_frac < 1):
        p.error("--val_frac and --test_frac must be positive with a sum below 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args), int(os.environ.get("RANK", 0)))
    from kvq.core.device import select_devices
    from kvq.core.distributed import DistInfo, distributed
    from kvq.eval.correlations import CORRELATIONS
    from kvq.engine.nsplit import SplitOptions, run_splits, summarize, write_results
    from kvq.engine.preflight import check_pool

    if "RANK" in os.environ:
        session = distributed(args.gpu_id, args.local_rank, args.dist_timeout)
        ids: list[int] = []
    else:
        device, ids = select_devices(args.gpu_id)
        session = nullcontext((DistInfo(), device))
    with session as (info, device):
        cfg = load(args)
        check_pool(cfg, info)  # every pooled video, feature and weight on disk, before any split (ranks agree)
        out = Path(args.out or Path("runs") / "splits" / cfg["name"])
        log_to_file(out / "log", cfg["name"], info.rank)
        log.info("world size %d, rank %d, device %s", info.world_size, info.rank, device)
        opts = SplitOptions(out, args.splits, args.val_frac, args.test_frac,
                            cfg["seed"] if args.seed is None else args.seed, args.group_by,
                            not args.no_progress, ids, args.sync_bn)
        results = run_splits(cfg, opts, device, info)
    if not info.is_main:
        return EXIT_OK
    csv_path, plot = write_results(out, results, cfg["keep"])
    print(f"{'split':>5} {'epoch':>5} {'selected':>8} " + " ".join(f"{k:>7}" for k in CORRELATIONS))
    for r in results:
        print(f"{r['split']:>5} {r['epoch']:>5} {r['selected']:>8} " + " ".join(f"{r[k]:7.4f}" for k in CORRELATIONS))
    summary = summarize(results)
    for k in CORRELATIONS:
        s = summary[k]
        print(f"test {k}: median {s['median']:.4f}, mean {s['mean']:.4f} ± {s['std']:.4f}")
    print(f"wrote {csv_path} and {plot}")
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
