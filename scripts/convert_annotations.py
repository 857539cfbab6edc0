"""Convert a public dataset's official metadata file(s) to this project's annotation csv
(`filename,score,group`), or with --output_format ksvqe to KSVQE's list
(`filename,cls_label,dis_label,score`, no header: cls_label = source group index, dis_label =
position in the group, 0 = the source); see docs/own-dataset.md.

    python scripts/convert_annotations.py --format konvid KoNViD_1k_mos.csv data/konvid/all.csv
    python scripts/convert_annotations.py --format kvq data/KVQ/train_data.csv data/KVQ/val_data.csv data/KVQ/all.csv
    python scripts/convert_annotations.py --format lsvq --subset train labels_train_test.csv data/lsvq/train.csv
    python scripts/convert_annotations.py --format kvq --output_format ksvqe data/KVQ/train_data.csv \
        data/KVQ/train_ksvqe.txt

Exit statuses: docs/commands.md "Exit statuses" (2: a metadata file that cannot be read, naming file and line).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from datasets.converters import CONVERTERS, KVQ_GROUP_SIZE, Options, convert, write_annotation_csv, write_ksvqe_list
from kvq.cli import EXIT_OK, log_level, make_parser, run_main, setup_logging


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--format", required=True, choices=CONVERTERS.names(), help="the dataset the files come from")
    p.add_argument("sources", nargs="+", metavar="SRC", help="official metadata file(s) of that dataset")
    p.add_argument("out", metavar="OUT", help="annotation file to write (see --output_format)")
    p.add_argument("--output_format", "--output-format", default="kvq_csv", choices=["kvq_csv", "ksvqe"],
                   help="kvq_csv: header filename,score,group (default); ksvqe: KSVQE's list without header, "
                        "filename,cls_label,dis_label,score (cls_label = source group index from --first_cls, "
                        "dis_label = position in the group, 0 = the source)")
    p.add_argument("--first_cls", "--first-cls", type=int, default=0,
                   help="ksvqe only: cls_label of the first group (give the val list a start above the train "
                        "list's labels, so that pooled lists keep their groups apart)")
    p.add_argument("--suffix", default=None,
                   help="extension appended to video ids instead of the format's default (konvid .mp4, "
                        "youtube_ugc .mkv, lsvq .mp4); for livevqc/kvq it replaces the name's extension")
    p.add_argument("--subset", default="all", choices=["all", "train", "test"],
                   help="lsvq only: keep the rows whose is_test column says train / test")
    p.add_argument("--group_size", "--group-size", type=int, default=KVQ_GROUP_SIZE,
                   help="kvq only: consecutive ids per source group when the file has no group column")
    args = p.parse_args(argv)
    if args.subset != "all" and args.format != "lsvq":
        p.error("--subset applies to --format lsvq only")
    if args.first_cls != 0 and args.output_format != "ksvqe":
        p.error("--first_cls applies to --output_format ksvqe only")
    if args.first_cls < 0:
        p.error("--first_cls must be non-negative")
    if args.group_size < 1:
        p.error("--group_size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    result = convert(args.format, args.sources, Options(args.suffix, args.subset, args.group_size))
    groups = len({r.group for r in result.rows})
    if args.output_format == "ksvqe":
        out = write_ksvqe_list(args.out, result.rows, args.first_cls)
        print(f"wrote {out}: {len(result.rows)} videos in {groups} groups "
              f"(cls_label {args.first_cls}..{args.first_cls + groups - 1})")
    else:
        out = write_annotation_csv(args.out, result.rows)
        print(f"wrote {out}: {len(result.rows)} videos in {groups} groups")
    if result.skipped:
        print(f"skipped {len(result.skipped)} rows without a score:", *result.skipped[:20], sep="\n  ")
        if len(result.skipped) > 20:
            print(f"  ... and {len(result.skipped) - 20} more")
    return EXIT_OK


if __name__ == "__main__":
    run_main(main)
