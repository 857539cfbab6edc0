"""Score the videos of an annotation file with a trained checkpoint; write `filename,score`.

    python test.py -o config/kwai_simpleVQA_test.yml [--gpu_id 0] [--output prediction.csv]
    python test.py -o config/Kwai_KSVQE_test.yml --videos clips/ more/*.mp4 --output scores.csv
    python test.py -o config/kwai_simpleVQA_test.yml --videos clips/   # SlowFast features made on the way
    python test.py --checkpoint checkpoint/KSVQE_head_val-ltest_n_finetuned.pth --videos a.mp4  # config inside

The CSV has a header and one row per video of the annotation file, in its order (a Codalab
submission): `score` is the model's raw output. With --videos (or --calibrated) a third column
`calibrated_score` holds the score on the training MOS scale (the checkpoint's calibration,
fitted on the train split by train.py). When the annotation file has labels,
SROCC/PLCC/KROCC/RMSE are printed too (undefined ones as null in the JSON line). Videos that
cannot be scored (undecodable, no cached features, --videos paths that match nothing) are listed
in `<output>.errors.csv` with the reason; the others are scored and the exit status is 3
(docs/commands.md "Exit statuses").
The checkpoint must fill every model key (no random parts): --checkpoint, else the config's
test_load_path (never load_path, the checkpoint training starts from).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

from kvq.cli import EXIT_OK, EXIT_PARTIAL, add_config_args, load, log_level, make_parser, run_main, setup_logging

if TYPE_CHECKING:
    from kvq.config import Config
    from kvq.eval.predict import Predictions

log = logging.getLogger("test")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    add_config_args(p, optional=True)
    p.add_argument("-t", "--target_set", default=None, help="accepted for compatibility with the reference; unused")
    p.add_argument("--split", default=None, choices=["train", "val", "test"],
                   help="data split of the config to score (default: the first of test, val, train it has)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint to score with (default: the config's test_load_path); one written by train.py "
                        "holds its config, so -o can be left out")
    p.add_argument("--output", default="prediction.csv", help="CSV to write (filename,score[,calibrated_score])")
    p.add_argument("--calibrated", action="store_true",
                   help="add a calibrated_score column (always there with --videos); score stays the raw output")
    p.add_argument("--videos", nargs="+", default=None, metavar="PATH_OR_GLOB",
                   help="score these files / folders / glob patterns instead of the annotation file; videos "
                        "that cannot be decoded go to --errors and the exit status is 3")
    p.add_argument("--errors", default=None,
                   help="CSV of videos that could not be scored (default <output>.errors.csv)")
    p.add_argument("--slowfast_weights", default=None,
                   help="with --videos, SimpleVQA: SlowFast R50 Kinetics-400 .pyth (default: searched, see docs/weights.md)")
    p.add_argument("--slowfast_random", action="store_true",
                   help="with --videos, SimpleVQA: the random SlowFast network of --slowfast_seed (checkpoints "
                        "trained on `SlowFast_features.py --no_pretrained` features, e.g. the demo's)")
    p.add_argument("--slowfast_seed", type=int, default=0, help="seed of --slowfast_random (default 0)")
    p.add_argument("--features", default=None,
                   help="with --videos, SimpleVQA: SlowFast feature cache folder (default ~/.cache/kvq/...)")
    p.add_argument("--plot", default=None, help="PNG scatter of predictions vs MOS (labeled sets only)")
    p.add_argument("--num_workers", type=int, default=None, help="data-loader workers (default: the config's)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.opt is None and args.checkpoint is None:
        p.error("give -o CONFIG, or --checkpoint CHECKPOINT written by train.py (it holds its config)")
    return args


def scoring_setup(args: argparse.Namespace) -> tuple["Config", str, Any]:
    """(config, checkpoint path, checkpoint content or None when not read yet): the -o config and
    --checkpoint (else its test_load_path); without -o, the config stored in --checkpoint (with
    --set overrides), which is read for it."""
    from kvq.api.loading import checkpoint_config, checkpoint_for_test
    from kvq.core.checkpoint import load_checkpoint_file

    if args.opt is not None:
        cfg = load(args)
        return cfg, checkpoint_for_test(cfg, args.checkpoint), None
    obj = load_checkpoint_file(args.checkpoint)
    return checkpoint_config(obj, args.checkpoint, args.overrides), args.checkpoint, obj


def print_metrics(preds: "Predictions", calibrated: Optional[list[float]], cfg: "Config", split: str,
                  plot: Optional[str], failed: int) -> None:
    """SROCC/PLCC/KROCC/RMSE (and RMSE_calibrated) as text, then as one JSON line (nan -> null)."""
    import numpy as np

    from kvq.eval.correlations import CORRELATIONS, correlation_metrics, metrics_json
    from kvq.eval.plots import scatter_plot

    metrics = correlation_metrics(preds.scores, preds.labels, cfg["metrics_fit"])
    shown = {k: metrics[k] for k in CORRELATIONS}
    if calibrated is not None:  # the train-split calibration: no fit to these labels
        shown["RMSE_calibrated"] = float(np.sqrt(np.mean((np.array(calibrated) - np.array(preds.labels)) ** 2)))
    if failed:
        log.warning("metrics over the %d scored videos; %d could not be scored", len(preds.scores), failed)
    print(" ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    print(metrics_json(shown))
    if plot:
        log.info("scatter plot: %s", scatter_plot(preds.scores, preds.labels, plot,
                                                  f"{cfg['name']} on data.{split}", metrics))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    from kvq.api.scorer import Scorer
    from kvq.api.scoring import scoring_split
    from kvq.api.videos import expand_videos
    from kvq.core.device import select_devices
    from kvq.engine.preflight import check_scoring
    from kvq.eval.predictions import write_errors, write_predictions
    from kvq.features.scored_files import SlowFastOptions

    cfg, checkpoint, obj = scoring_setup(args)
    split = scoring_split(cfg, args.split)
    device, _ = select_devices(args.gpu_id)
    if not args.videos:  # every file the annotation mode reads is on disk, before any work
        check_scoring(cfg, split, checkpoint)
    slowfast = SlowFastOptions(not args.slowfast_random, args.slowfast_weights, args.slowfast_seed, args.features)
    scorer = Scorer(cfg, checkpoint, device, split, obj, slowfast, calibrated=bool(args.videos or args.calibrated))
    num_workers = cfg["num_workers"] if args.num_workers is None else args.num_workers
    progress = not args.no_progress
    if args.videos:
        paths, missing = expand_videos(args.videos)
        preds, unreadable = scorer.predict_files(paths, num_workers=num_workers, progress=progress)
        errors = missing + unreadable
    else:
        preds, errors = scorer.predict_annotations(num_workers, progress)
    calibrated = scorer.calibration.apply(preds.scores).tolist() if scorer.calibration else None
    out = write_predictions(args.output, preds.names, preds.scores, calibrated)
    log.info("wrote %d predictions to %s", len(preds.names), out)
    if preds.has_labels and len(preds.scores) >= 3:
        print_metrics(preds, calibrated, cfg, split, args.plot, len(errors))
    elif not args.videos:
        reason = "has no labels" if not preds.has_labels else f"has {len(preds.scores)} scored videos (metrics need 3)"
        log.info("data.%s %s: no metrics%s", split, reason, " and no --plot" if args.plot else "")
    if errors:
        err_file = write_errors(args.errors or f"{args.output}.errors.csv", errors)
        print(f"{len(errors)} of {len(errors) + len(preds.names)} videos could not be scored; see {err_file}",
              file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


if __name__ == "__main__":
    run_main(main, fast_exit=True)
