"""Grouped random splits: every group (source/content id) lands in exactly one part.

Groups are shuffled by a numpy generator seeded with `seed`, then each group in turn goes to
the part furthest below its target size (`fraction * number of videos`). Every part therefore
ends within one group's size of its target, and the same groups, fractions and seed always give
the same split, whatever the order of the input.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

PARTS = ("train", "val", "test")
GROUP_BY = ("group", "cls_label", "none")  # what keeps videos together: a column, or nothing


def grouped_split(groups: Sequence[str], fractions: Mapping[str, float],
                  seed: int | Sequence[int] = 0) -> dict[str, list[int]]:
    """Indices into `groups` (one entry per video) per part, in input order.

    `fractions`: part name -> fraction of the videos (each >= 0, summing to 1). A part with a
    positive fraction that receives no group is an error (too few groups)."""
    bad = {k: v for k, v in fractions.items() if not 0 <= v <= 1}
    if bad or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"fractions must lie in [0, 1] and sum to 1, got {dict(fractions)}")
    if not groups:
        raise ValueError("nothing to split: no videos")
    sizes = Counter(groups)
    names = sorted(sizes)
    order = np.random.default_rng(seed).permutation(len(names))
    targets = {part: frac * len(groups) for part, frac in fractions.items()}
    counts = dict.fromkeys(fractions, 0)
    part_of: dict[str, str] = {}
    for i in order:
        name = names[i]
        part = max(fractions, key=lambda p: targets[p] - counts[p])
        part_of[name] = part
        counts[part] += sizes[name]
    empty = [p for p, frac in fractions.items() if frac > 0 and counts[p] == 0]
    if empty:
        raise ValueError(f"{len(names)} groups are too few to give every part a group "
                         f"(empty: {', '.join(empty)}; fractions {dict(fractions)})")
    out: dict[str, list[int]] = {part: [] for part in fractions}
    for index, group in enumerate(groups):
        out[part_of[group]].append(index)
    return out


def grouped_n_splits(groups: Sequence[str], n: int, val_frac: float, test_frac: float,
                     seed: int = 0) -> list[dict[str, list[int]]]:
    """`n` independent train/val/test splits (repeated random splits, not folds): split i is
    `grouped_split` seeded with (seed, i), so adding splits later leaves the first ones as they were."""
    if n < 1:
        raise ValueError(f"the number of splits must be at least 1, got {n}")
    fractions = {"train": 1 - val_frac - test_frac, "val": val_frac, "test": test_frac}
    return [grouped_split(groups, fractions, (seed, i)) for i in range(n)]
