"""NTIRE 2024 KVQ challenge scorer (score = 0.45 SROCC + 0.45 PLCC + 0.05 acc_nonsource + 0.05 acc_source).

Two forms, chosen by whether the first argument is a file or a directory:

    python metric_score.py PREDICTION_CSV TRUTH_DIR
        prints a table, then as its last line one JSON object
        {"score", "SROCC", "PLCC", "acc_nonsource", "acc_source"} (nan -> null).
    python metric_score.py INPUT_DIR OUTPUT_DIR
        Codalab layout: INPUT_DIR/res/prediction.csv and INPUT_DIR/ref/{truth.csv,
        rank-pair-val.xlsx}; writes OUTPUT_DIR/scores.txt (`key: value` lines).

PREDICTION_CSV has the header `filename,score`; TRUTH_DIR holds truth.csv (`filename,score`)
and rank-pair-val.xlsx (sheets `nonsource` and `source`: video1, video2, rank).
Unusable inputs: every problem is listed on stderr and the exit status is 2 (docs/commands.md "Exit statuses").
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from kvq.cli import EXIT_OK, EXIT_USAGE, log_level, make_parser, run_main, setup_logging

RESULT_KEYS = ("score", "SROCC", "PLCC", "acc_nonsource", "acc_source")
PREDICTION_NAME = "prediction.csv"


def format_table(result: dict) -> str:
    """Human-readable summary of a `score_files` result."""
    rows = [
        ("videos scored", str(result["n_videos"])),
        ("nonsource pairs", str(result["n_pairs_nonsource"])),
        ("source pairs", str(result["n_pairs_source"])),
        ("predictions ignored (not in truth)", str(result["n_ignored_predictions"])),
    ] + [(key, f"{result[key]:.6f}") for key in RESULT_KEYS]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def result_json(result: dict) -> str:
    """One-line JSON of the five challenge numbers; nan (undefined correlation) becomes null."""
    from kvq.eval.correlations import metrics_json

    return metrics_json({k: result[k] for k in RESULT_KEYS})


def codalab_scores(result: dict) -> str:
    """scores.txt content in Codalab's `key: value` format."""
    return "".join(f"{key}: {result[key]!r}\n" for key in RESULT_KEYS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("first", type=Path, help="PREDICTION_CSV (file) or Codalab INPUT_DIR (directory)")
    parser.add_argument("second", type=Path, help="TRUTH_DIR, or Codalab OUTPUT_DIR")
    args = parser.parse_args(argv)
    setup_logging(log_level(args))
    from kvq.core.io import atomic_write_text
    from kvq.eval.challenge import ScoringError, score_files

    try:
        if args.first.is_dir():
            result = score_files(args.first / "res" / PREDICTION_NAME, args.first / "ref")
            out = args.second / "scores.txt"
            atomic_write_text(out, codalab_scores(result))
            print(format_table(result))
            print(f"wrote {out}")
        elif args.first.is_file():
            result = score_files(args.first, args.second)
            print(format_table(result))
            print(result_json(result))
        else:
            raise ScoringError([f"not found (neither a prediction CSV nor a Codalab input directory): {args.first}"])
    except ScoringError as exc:
        print(f"metric_score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
