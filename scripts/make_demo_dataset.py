"""Build the built-in KVQ-shaped demo dataset (no downloads); see kvq/demo/build.py for the layout.

    python scripts/make_demo_dataset.py --out data/demo [--sources 24] [--seed 0] [--duration 3]
    python scripts/make_demo_dataset.py --out data/KVQ --layout kvq   # the KVQ release's file names

Exit statuses: docs/commands.md "Exit statuses".
"""
from __future__ import annotations

import argparse
import logging

from kvq.cli import EXIT_OK, EXIT_USAGE, log_level, make_parser, run_main, setup_logging
from kvq.demo.annotations import LAYOUTS
from kvq.demo.build import DemoDatasetError, build_dataset
from kvq.demo.ffmpeg import FFmpegError
from kvq.demo.plan import DemoParams


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 360x640, got '{text}'") from None
    return w, h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = DemoParams()
    p = make_parser(__doc__)
    p.add_argument("--out", required=True, help="dataset root to create (or resume)")
    p.add_argument("--sources", type=int, default=d.sources, help="source clips; each gives 7 videos")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every random choice")
    p.add_argument("--duration", type=float, default=d.duration, help="clip length in seconds")
    p.add_argument("--size", type=parse_size, default=(d.width, d.height),
                   help="portrait WIDTHxHEIGHT (landscape sources swap it); small values for tests")
    p.add_argument("--layout", default="demo", choices=list(LAYOUTS),
                   help="demo: train/val/test.csv, KSVQE lists, truth.csv, ...; kvq: the KVQ release's names "
                        "(train_data.csv, val_data.csv, test_data.csv unlabeled) and rank-pair-val.xlsx")
    p.add_argument("--num_workers", "--workers", type=int, default=None,
                   help="source groups built in parallel (default min(2, cpus))")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    params = DemoParams(sources=args.sources, seed=args.seed, duration=args.duration,
                        width=args.size[0], height=args.size[1])
    try:
        summary = build_dataset(args.out, params, workers=args.num_workers, progress=True, layout=args.layout)
    except (DemoDatasetError, FFmpegError, ValueError) as e:
        logging.getLogger("make_demo_dataset").error("%s", e)
        return EXIT_USAGE
    mos = [v["mos"] for v in summary.videos]
    print(f"demo dataset: {summary.root}" + (" (already complete; nothing done)" if summary.noop else ""))
    for split, (groups, videos) in summary.split_counts().items():
        print(f"  {split:5s}: {groups} source groups, {videos} videos")
    print(f"  MOS range {min(mos):.3f} .. {max(mos):.3f}; {summary.seconds:.1f} s"
          + (f"; resumed {summary.resumed_groups} finished groups" if summary.resumed_groups else ""))
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
