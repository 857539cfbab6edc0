"""Score the videos of an annotation file with a trained checkpoint; write `filename,score`.

    python test.py -o config/kwai_simpleVQA_test.yml [--gpu_id 0] [--output prediction.csv]
    python test.py -o config/Kwai_KSVQE_test.yml --videos clips/ more/*.mp4 --output scores.csv
    python test.py -o config/kwai_simpleVQA_test.yml --videos clips/   # SlowFast features made on the way

The CSV has a header and one row per video of the annotation file, in its order (a Codalab
submission): `score` is the model's raw output. With --videos (or --calibrated) a third column
`calibrated_score` holds the score on the training MOS scale (the checkpoint's calibration,
fitted on the train split by train.py). When the annotation file has labels,
SROCC/PLCC/KROCC/RMSE are printed too.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

import numpy as np

from torch.utils.data import DataLoader

from datasets import build_dataset, collate
from kvq.calibration import checkpoint_calibration
from kvq.checkpoint import load_checkpoint_file
from kvq.cli import add_config_args, load, run_main
from kvq.device import select_devices
from kvq.evaluate import predict
from kvq.inference import (SlowFastOptions, checkpoint_for_test, expand_videos, load_model, score_videos, scoring_spec,
                           video_records, write_errors, write_predictions)
from kvq.metrics import CORRELATIONS, correlation_metrics
from kvq.plots import scatter_plot
from kvq.preflight import check_scoring

log = logging.getLogger("test")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("-t", "--target_set", default=None, help="accepted for seed compatibility; unused")
    p.add_argument("--split", default=None, choices=["train", "val", "test"],
                   help="data split of the config to score (default: the first of test, val, train it has)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: test_load_path, else load_path)")
    p.add_argument("--output", default="prediction.csv", help="CSV to write (filename,score[,calibrated_score])")
    p.add_argument("--calibrated", action="store_true",
                   help="add a calibrated_score column (always there with --videos); score stays the raw output")
    p.add_argument("--videos", nargs="+", default=None, metavar="PATH_OR_GLOB",
                   help="score these files / folders / glob patterns instead of the annotation file; videos "
                        "that cannot be decoded go to --errors and the exit status is 3")
    p.add_argument("--errors", default=None, help="with --videos: CSV of failed videos (default <output>.errors.csv)")
    p.add_argument("--slowfast_weights", default=None,
                   help="with --videos, SimpleVQA: SlowFast R50 Kinetics-400 .pyth (default: searched, see README)")
    p.add_argument("--slowfast_random", action="store_true",
                   help="with --videos, SimpleVQA: the random SlowFast network of --slowfast_seed (checkpoints "
                        "trained on `SlowFast_features.py --no_pretrained` features, e.g. the demo's)")
    p.add_argument("--slowfast_seed", type=int, default=0, help="seed of --slowfast_random (default 0)")
    p.add_argument("--features", default=None,
                   help="with --videos, SimpleVQA: SlowFast feature cache folder (default ~/.cache/kvq/...)")
    p.add_argument("--plot", default=None, help="PNG scatter of predictions vs MOS (labeled sets only)")
    p.add_argument("--num_workers", type=int, default=None, help="data-loader workers (default: the config's)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load(args)
    split, spec = scoring_spec(cfg, args.split)
    device, _ = select_devices(args.gpu_id)
    checkpoint = checkpoint_for_test(cfg, args.checkpoint)
    if not args.videos:  # every file the annotation mode reads is on disk, before any work
        check_scoring(cfg, split, checkpoint)
    obj = load_checkpoint_file(checkpoint)
    model = load_model(cfg, checkpoint, device, obj)
    calibration = checkpoint_calibration(obj, checkpoint) if args.videos or args.calibrated else None
    num_workers = cfg["num_workers"] if args.num_workers is None else args.num_workers
    errors: list[tuple[str, str]] = []
    if args.videos:
        slowfast = SlowFastOptions(not args.slowfast_random, args.slowfast_weights, args.slowfast_seed, args.features)
        preds, errors = score_videos(model, video_records(expand_videos(args.videos)), spec, slowfast, device,
                                    cfg["amp"], num_workers=num_workers, progress=not args.no_progress)
    else:
        loader = DataLoader(build_dataset(spec), batch_size=1, shuffle=False, collate_fn=collate,
                            num_workers=num_workers)
        preds = predict(model, loader, device, cfg["amp"], desc="score", progress=not args.no_progress)
    calibrated = calibration.apply(preds.scores).tolist() if calibration else None
    out = write_predictions(args.output, preds.names, preds.scores, calibrated)
    log.info("wrote %d predictions to %s", len(preds.names), out)
    if errors:
        err_file = write_errors(args.errors or f"{args.output}.errors.csv", errors)
        print(f"{len(errors)} of {len(errors) + len(preds.names)} videos could not be scored; see {err_file}",
              file=sys.stderr)
        return 3
    if preds.has_labels and len(preds.scores) >= 3:
        metrics = correlation_metrics(preds.scores, preds.labels, cfg["metrics_fit"])
        shown = {k: metrics[k] for k in CORRELATIONS}
        if calibrated is not None:  # the train-split calibration: no fit to these labels
            shown["RMSE_calibrated"] = float(np.sqrt(np.mean((np.array(calibrated) - np.array(preds.labels)) ** 2)))
        print(" ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        print(json.dumps(shown))
        if args.plot:
            log.info("scatter plot: %s", scatter_plot(preds.scores, preds.labels, args.plot,
                                                      f"{cfg['name']} on data.{split}", metrics))
    elif not args.videos:
        reason = "has no labels" if not preds.has_labels else f"has {len(preds.scores)} videos (metrics need 3)"
        log.info("data.%s %s: no metrics%s", split, reason, " and no --plot" if args.plot else "")
    return 0


if __name__ == "__main__":
    run_main(main)
