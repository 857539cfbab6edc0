"""Section `train`: train.py with config/demo_simpleVQA.yml on generated clips (1 process) and
train_ddp.py under torchrun with 2 gloo processes: samples/s of the last epoch, scaling efficiency."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.sections.common import ROOT, SOURCES, Context, bench_clip, remove_tree, run_measured
from datasets.features import write_random_features
from kvq.core.distributed import free_port


def make_train_data(ctx: Context) -> Path:
    """Train/val clips (varied lavfi sources, random MOS and SlowFast features), cached."""
    plan = ctx.plan
    root = ctx.work / f"train_data_{plan.train_clip.name[:-4]}_{plan.train_videos}"
    n = plan.train_videos + plan.val_videos
    rng = np.random.default_rng(0)
    names = [bench_clip(plan.train_clip, root, SOURCES[i % len(SOURCES)], seed=i).name for i in range(n)]
    write_random_features(root / "feat", names, np.random.default_rng(0))
    mos = rng.uniform(1, 5, size=n)
    rows = [f"{a},{b:.3f}\n" for a, b in zip(names, mos)]
    (root / "train.csv").write_text("filename,score\n" + "".join(rows[:plan.train_videos]))
    (root / "val.csv").write_text("filename,score\n" + "".join(rows[plan.train_videos:]))
    return root


def bench_train(ctx: Context) -> dict[str, Any]:
    """train.py (1 process) and train_ddp.py (2 gloo processes): last epoch's samples/s, wall time, peak RSS."""
    data = make_train_data(ctx)
    raw = yaml.safe_load((ROOT / "config" / "demo_simpleVQA.yml").read_text())
    for split, anno in (("train", "train.csv"), ("val", "val.csv"), ("test", "val.csv")):
        raw["data"][split]["args"].update(anno_file=str(data / anno), data_prefix=str(data),
                                          data_prefix_3D=str(data / "feat"))
    # the data path and the network run every epoch (the demo caches the frozen features instead,
    # which DDP cannot, and which would time the head alone)
    raw.update(num_epochs=ctx.plan.train_epochs, save_model=False, cache_features=False)
    raw["model"]["args"]["simpleVQA"]["head"]["standardize"] = False
    cfg_path = ctx.work / "train" / "demo_simpleVQA_bench.yml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(raw))
    sets = [a for o in ctx.plan.train_overrides for a in ("--set", o)]
    cores = os.cpu_count() or 1
    results = {}
    for name, launcher, env in (
            ("1 process", [], {}),
            ("2-process DDP (gloo)", ["-m", "torch.distributed.run", "--nproc_per_node=2",
                                      f"--master_port={free_port()}"], {"OMP_NUM_THREADS": str(max(1, cores // 2))})):
        out = ctx.work / "train" / ("single" if not launcher else "ddp")
        remove_tree(out)
        script = "train.py" if not launcher else "train_ddp.py"
        cmd = [sys.executable, *launcher, str(ROOT / script), "-o", str(cfg_path), "-r", str(out),
               "--log_dir", str(out / "log"), "--gpu_id", "cpu", "--no_progress", *sets]
        wall, rss = run_measured(cmd, out.with_suffix(".log"), {**os.environ, "PYTHONPATH": str(ROOT), **env})
        history = json.loads(next(out.glob("*_history.json")).read_text())
        seconds = history[-1]["seconds"]
        results[name] = {"epoch_s": seconds, "samples_per_s": ctx.plan.train_videos / seconds,
                         "epochs": len(history), "wall_s": wall, "peak_rss_mib": rss}
    single, ddp = results["1 process"]["samples_per_s"], results["2-process DDP (gloo)"]["samples_per_s"]
    return {"config": "config/demo_simpleVQA.yml", "train_videos": ctx.plan.train_videos,
            "clip": asdict(ctx.plan.train_clip), "runs": results, "scaling_efficiency": ddp / (2 * single)}

