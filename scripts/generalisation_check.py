"""How a checkpoint generalises to clips the demo generator never makes (docs/demo.md).

    python scripts/generalisation_check.py [--checkpoint CKPT] [--out demo_out/generalisation]

Makes (once; a finished set is reused) 3 contents the demo never uses (lavfi `testsrc`,
`zoneplate`, and a scrolling `rgbtestsrc` with temporal noise) x 6 codings it never uses (libx265
CRF 30/40/50, libvpx-vp9 CRF 35/50/63, both in .mp4) = 18 clips, each labelled with its VMAF
(vmaf_v0.6.1neg, as the demo's labels) against the lossless source. Then scores them with the
checkpoint (`kvq.api.scorer.load_scorer`, the same path as `test.py --videos`) and prints SROCC
against VMAF over all clips, per codec and per content; predictions land in OUT/predictions.csv.

Exit statuses: docs/commands.md "Exit statuses" (3: some clips could not be scored; they are listed).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from kvq.cli import EXIT_OK, EXIT_PARTIAL, log_level, make_parser, run_main, setup_logging

log = logging.getLogger("generalisation_check")

DEMO_CHECKPOINT = "demo_out/checkpoint/demo_SimpleVQA_head_val-ltest_s_finetuned.pth"
LABELS = "labels.csv"
LABEL_FIELDS = ("filename", "vmaf", "codec", "content")
# content name -> lavfi graph; {s} = WIDTHxHEIGHT, {r} = frame rate
CONTENTS = {
    "testsrc": "testsrc=s={s}:r={r}",
    "zoneplate": "zoneplate=s={s}:r={r}:kt2=2:ky2=4:kx2=4",
    "rgbtestsrc_noisy": "rgbtestsrc=s={s}:r={r},scroll=h=0.004:v=0.002,noise=alls=12:allf=t",
}
# codec name -> (file suffix, [(CRF, ffmpeg encoder arguments)])
CODINGS = {
    "x265": (".mp4", [(crf, ["-c:v", "libx265", "-preset", "fast", "-crf", str(crf), "-tag:v", "hvc1",
                             "-x265-params", "log-level=error:pools=1:frame-threads=1"]) for crf in (30, 40, 50)]),
    "vp9": (".mp4", [(crf, ["-c:v", "libvpx-vp9", "-crf", str(crf), "-b:v", "0", "-deadline", "good",
                             "-cpu-used", "4", "-threads", "1"]) for crf in (35, 50, 63)]),
}


def make_clips(out: Path, width: int, height: int, frames: int, fps: int = 30) -> list[dict]:
    """Write the clips and OUT/labels.csv (atomically, last: its presence marks a finished set).
    Returns the label rows (filename, vmaf, codec, content)."""
    from kvq.demo.ffmpeg import ffmpeg_exe, make_clip, measure_vmaf, run_ffmpeg
    from kvq.core.io import atomic_open

    exe = ffmpeg_exe()
    out.mkdir(parents=True, exist_ok=True)
    base = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    rows = []
    for content, graph in CONTENTS.items():
        source = make_clip(out / f".source_{content}.mp4", graph.format(s=f"{width}x{height}", r=fps), frames,
                           options=("-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", "-threads", "1"), exe=exe)
        for codec, (suffix, settings) in CODINGS.items():
            for crf, args in settings:
                name = f"{content}_{codec}_crf{crf}{suffix}"
                run_ffmpeg(base + ["-i", str(source), "-an", "-pix_fmt", "yuv420p", *args, str(out / name)],
                           f"{codec} {name}")
                vmaf = measure_vmaf(exe, out / name, source, frames)
                rows.append({"filename": name, "vmaf": round(vmaf, 4), "codec": codec, "content": content})
                log.info("%s: VMAF %.2f", name, vmaf)
        source.unlink()
    with atomic_open(out / LABELS, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_labels(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{**row, "vmaf": float(row["vmaf"])} for row in csv.DictReader(f)]


def srocc_table(rows: list[dict], scores: dict[str, float]) -> list[tuple[str, int, float]]:
    """(group, clips, SROCC of scores vs VMAF) for all clips, then per codec and per content."""
    from kvq.eval.correlations import correlation_metrics

    groups = [("all", rows)]
    for key in ("codec", "content"):
        for value in dict.fromkeys(r[key] for r in rows):
            groups.append((f"{key} {value}", [r for r in rows if r[key] == value]))
    table = []
    for name, members in groups:
        members = [r for r in members if r["filename"] in scores]
        srocc = correlation_metrics([scores[r["filename"]] for r in members], [r["vmaf"] for r in members])["SROCC"]
        table.append((name, len(members), srocc))
    return table


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--checkpoint", default=DEMO_CHECKPOINT, help="checkpoint written by train.py")
    p.add_argument("--out", default="demo_out/generalisation", help="folder of the clips (made once, reused)")
    p.add_argument("--size", default="360x640", help="WIDTHxHEIGHT of the clips")
    p.add_argument("--frames", type=int, default=45, help="frames per clip (30 fps)")
    args = p.parse_args(argv)
    setup_logging(log_level(args))
    out = Path(args.out)
    width, height = (int(x) for x in args.size.lower().split("x"))

    from kvq.core.io import atomic_open
    from kvq.api.scorer import load_scorer

    scorer = load_scorer(args.checkpoint)  # before making clips: a bad checkpoint fails at once
    rows = read_labels(out / LABELS) if (out / LABELS).is_file() else make_clips(out, width, height, args.frames)
    result = scorer.score_many([r["filename"] for r in rows], root=out)
    scores = dict(zip(result.paths, result.raw))
    with atomic_open(out / "predictions.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "score", "vmaf"])
        writer.writerows([r["filename"], scores[r["filename"]], r["vmaf"]] for r in rows if r["filename"] in scores)
    print(f"{args.checkpoint} on {len(scores)} clips of {out} (SROCC of raw scores against VMAF):")
    for name, n, srocc in srocc_table(rows, scores):
        print(f"  {name:26s} {n:3d} clips  SROCC {srocc:.3f}")
    for path, message in result.errors:
        log.error("%s: %s", path, message)
    return EXIT_PARTIAL if result.errors else EXIT_OK


if __name__ == "__main__":
    run_main(main)
