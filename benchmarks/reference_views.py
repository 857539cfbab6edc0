"""Time the public reference repository's test views (run by benchmarks/run.py --reference DIR).

    cd DIR && PYTHONPATH=. python /path/to/benchmarks/reference_views.py --config config/Kwai_KSVQE_test.yml \
        --videos a.mp4 b.mp4 [--features FEAT_DIR] [--set technical.clip_len=4] [--repeat 3]

Imports the reference's own Dataset classes from DIR (its `datasets/fusion_datasets.py`, which
needs OpenCV and decord), builds the config's `data.val` dataset over `--videos` (label 0) and
prints one JSON line per video: {"video": file name, "view_s": best wall time of dataset[i]}.
Nothing of the reference is copied into this project.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the reference's test YAML, relative to its checkout")
    p.add_argument("--videos", nargs="+", required=True)
    p.add_argument("--features", default="", help="SlowFast feature folder (SimpleVQA's data_prefix_3D)")
    p.add_argument("--set", action="append", default=[], metavar="VIEW.KEY=VALUE",
                   help="override a sample_types entry (as the benchmark's --quick does for ours)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    import yaml
    from datasets import fusion_datasets  # the reference's module (its checkout first on PYTHONPATH)

    spec = yaml.safe_load(Path(args.config).read_text())["data"]["val"]
    opt = spec["args"]
    for item in args.set:
        key, value = item.split("=", 1)
        view, name = key.split(".", 1)
        opt["sample_types"][view][name] = yaml.safe_load(value)
    opt["anno_file"] = [{"filename": str(Path(v).resolve()), "video_name": Path(v).name, "label": 0.0,
                         "dis_label": 0, "cls_label": 0} for v in args.videos]
    opt["data_prefix_3D"] = args.features
    dataset = getattr(fusion_datasets, spec["type"])(opt)
    for i, video in enumerate(args.videos):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            dataset[i]
            times.append(time.perf_counter() - t0)
        print(json.dumps({"video": Path(video).name, "view_s": min(times)}), flush=True)


if __name__ == "__main__":
    main()
