"""Section `forward`: SimpleVQA and KSVQE (random weights) on the test samples, fp32 against bf16
autocast with channels-last convolutions."""
from __future__ import annotations

from typing import Any

import torch

from benchmarks.sections.common import Context, best_time, dataset_for
from datasets import collate
from kvq.core.device import autocast, to_channels_last
from kvq.eval.predict import clip_inputs, video_scores
from models import create_model


def bench_forward(ctx: Context) -> list[dict[str, Any]]:
    """fp32 vs bf16 autocast + channels-last on the videos' test samples."""
    device = torch.device("cpu")
    rows = []
    for name, cfg in (("SimpleVQA", ctx.simplevqa), ("KSVQE", ctx.ksvqe)):
        torch.manual_seed(0)
        model = create_model(cfg).eval()
        samples = (ctx.samples.get(name) or [dataset_for(cfg, [p])[0] for p in ctx.videos])[:ctx.plan.forward_videos]
        batches = [clip_inputs(collate([s]), device) for s in samples]
        row: dict[str, Any] = {"model": name, "clips_per_video": batches[0][1], "videos": len(samples)}
        scores = {}
        for variant, amp in (("fp32", "off"), ("bf16_channels_last", "bf16")):
            if amp != "off":
                to_channels_last(model)

            def score(batch: tuple[dict, int]) -> torch.Tensor:
                with torch.no_grad(), autocast(device, amp):
                    return video_scores(model(batch[0])["score"], batch[1]).view(-1).float()

            seconds, first = best_time(lambda: score(batches[0]), ctx.plan.forward_repeat)
            row[f"{variant}_s"] = seconds
            scores[variant] = torch.cat([first, *(score(b) for b in batches[1:])])
        diff = (scores["fp32"] - scores["bf16_channels_last"]).abs().max()
        rows.append({**row, "speedup": row["fp32_s"] / row["bf16_channels_last_s"], "max_abs_score_diff": float(diff),
                     "score_range_fp32": float(scores["fp32"].max() - scores["fp32"].min())})
    return rows
