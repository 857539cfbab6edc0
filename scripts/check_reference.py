"""Check this project's models against the reference outputs of the conformance fixtures.

    python scripts/check_reference.py FIXTURE_DIR [--manifests DIR] [--max_frames N] [--only NAME ...]

Prints one JSON line per case on stdout:
    {"model": ..., "case": ..., "max_abs_error": ..., "pass": true | false | null, ...}
("pass": null = skipped on purpose by --max_frames; "skipped"/"error"/"failures" say why a case
did not pass). Exit status (docs/commands.md "Exit statuses") 0 only when no case failed: 1 when one did,
2 when the fixtures cannot be read.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kvq.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, log_level, make_parser, run_main, setup_logging

log = logging.getLogger("check_reference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("fixture_dir", type=Path, help="folder with detweights.py and expected_*.json")
    parser.add_argument("--manifests", type=Path, action="append", default=[],
                        help="other folder to look for manifest_*.json in (repeatable)")
    parser.add_argument("--max_frames", "--max-frames", type=int, default=None, metavar="N",
                        help="skip cases whose inputs have more than N frames")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="fixture names to check (expected_<NAME>.json), e.g. simplevqa slowfast")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    from kvq.eval.conformance import iter_checks

    results = []
    try:
        for result in iter_checks(args.fixture_dir, args.manifests, args.only, args.max_frames):
            print(result.to_json(), flush=True)
            results.append(result)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    failed = [r for r in results if r.passed is False]
    skipped = [r for r in results if r.passed is None]
    log.info("%d cases: %d passed, %d failed, %d skipped", len(results),
             len(results) - len(failed) - len(skipped), len(failed), len(skipped))
    return EXIT_FAILURE if failed else EXIT_OK


if __name__ == "__main__":
    run_main(main)
