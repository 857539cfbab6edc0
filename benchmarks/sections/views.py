"""Section `views`: one test sample per video through the real Dataset classes, against the decode
bound; and the DataLoader with 0 and 2 workers."""
from __future__ import annotations

from itertools import cycle, islice
from typing import Any

from torch.utils.data import DataLoader

from benchmarks.sections.common import Context, best_time, dataset_for
from datasets import collate


def bench_views(ctx: Context, decode: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seconds per test sample (kept in ctx.samples for later sections); ratio = bound / time."""
    bounds = {r["video"]: r for r in decode}
    rows = []
    for model, cfg in (("KSVQE", ctx.ksvqe), ("SimpleVQA", ctx.simplevqa)):
        ctx.samples[model] = []
        for path in ctx.videos:
            data = dataset_for(cfg, [path])
            seconds, sample = best_time(lambda: data[0], ctx.plan.repeat)
            ctx.samples[model].append(sample)
            row = {"model": model, "video": path.name, "view_s": seconds}
            bound = bounds.get(path.name)
            if bound:
                row["per_video_second_s"] = seconds / bound["seconds"]
                row["bound_s"] = bound[f"{model}_bound_s"]
                row["ratio_to_bound"] = bound[f"{model}_bound_s"] / seconds
            rows.append(row)
        items = list(islice(cycle(ctx.videos), ctx.plan.loader_items))
        data = dataset_for(cfg, items)
        for workers in (0, 2):
            loader = DataLoader(data, batch_size=1, num_workers=workers, collate_fn=collate)
            seconds, _ = best_time(lambda: sum(1 for _ in loader), 1)
            rows.append({"model": model, "video": f"DataLoader {len(items)} videos, {workers} workers",
                         "view_s": seconds / len(items)})
    return rows
