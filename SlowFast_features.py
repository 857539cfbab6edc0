"""Cache SlowFast R50 features for SimpleVQA (same CLI and file layout as the reference).

    python SlowFast_features.py --video_root data/KVQ \
        --video_csv data/KVQ/train_data.csv data/KVQ/val_data.csv data/KVQ/test_data.csv \
        --feature_save_folder feature/simpleVQA --database kvq [--gpu_id 0] [--num_workers 6]

Every split SimpleVQA reads needs its features (training: train and val; test.py: the scored split).
Writes <feature_save_folder>/<database>/<video_name>/feature_<i>_{slow,fast}_feature.npy;
videos already done are skipped, so an interrupted run can simply be started again.
Exit statuses (docs/commands.md "Exit statuses"): 3 when some videos could not be decoded (listed on stderr;
the others are done).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from kvq.cli import EXIT_OK, EXIT_PARTIAL, add_gpu_arg, log_level, make_parser, run_main, setup_logging

log = logging.getLogger("SlowFast_features")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--video_root", required=True, help="folder the csv's file names are relative to")
    p.add_argument("--video_csv", required=True, nargs="+",
                   help="annotation csv(s); column 0 = video file name (several files: their union)")
    p.add_argument("--feature_save_folder", default="./feature/simpleVQA/", help="output root")
    p.add_argument("--database", default="kvq", help="sub-folder of the output root")
    p.add_argument("--resize", type=int, default=224, help="frames are resized to resize x resize")
    p.add_argument("--num_workers", type=int, default=6, help="decoding processes")
    add_gpu_arg(p, "GPU to use, e.g. '0' (the first id of a list), or 'cpu' (default: GPU 0 when CUDA is "
                   "available, else the CPU); a GPU that is not there is an error (exit 2)")
    p.add_argument("--batch_clips", type=int, default=2,
                   help="clips per forward pass (2: as fast as 4 on a CPU, with less memory)")
    p.add_argument("--amp", choices=("off", "bf16"), default="off",
                   help="bf16: bf16 autocast + channels-last (faster where the CPU has AVX512-BF16/AMX, or on a "
                        "GPU; features differ from the fp32 ones, see docs/benchmarks.md); off: fp32")
    p.add_argument("--weights", default=None, help="SlowFast R50 Kinetics-400 .pyth (default: searched, see docs/weights.md)")
    p.add_argument("--no_pretrained", action="store_true",
                   help="random-initialised network (demo/tests only; features are not Kinetics features)")
    p.add_argument("--seed", type=int, default=0,
                   help="with --no_pretrained: seed of the random network (the same seed gives the same features)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    from datasets.annotations import read_annotations
    from kvq.core.device import select_devices
    from kvq.features.slowfast import build_extractor, extract_features

    records = {r.video_name: r for csv in args.video_csv for r in read_annotations(csv, args.video_root)}.values()
    device, _ = select_devices(args.gpu_id, "--gpu_id")
    if args.no_pretrained:
        log.warning("--no_pretrained: using a randomly initialised SlowFast network")
    model = build_extractor(not args.no_pretrained, args.weights, args.seed)
    out = Path(args.feature_save_folder) / args.database
    errors = extract_features([(r.video_name, r.path) for r in records], out, model, device, args.resize,
                              args.batch_clips, args.num_workers, progress=not args.no_progress, keep_unrecorded=True,
                              amp=args.amp)
    if errors:
        print(f"{len(errors)} videos could not be decoded:\n  " + "\n  ".join(f"{k}: {v}" for k, v in errors.items()),
              file=sys.stderr)
        return EXIT_PARTIAL
    log.info("features of %d videos under %s", len(records), out)
    return EXIT_OK


if __name__ == "__main__":
    run_main(main, fast_exit=True)
