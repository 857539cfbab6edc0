"""Grouped splits: no group in two parts, sizes near the fractions, deterministic by seed."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.splits import grouped_n_splits, grouped_split

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def random_groups(seed: int) -> list[str]:
    """A shuffled list of videos with group sizes 1..9."""
    rng = np.random.default_rng(seed)
    groups = [f"g{i}" for i in range(int(rng.integers(15, 60))) for _ in range(int(rng.integers(1, 10)))]
    return [groups[i] for i in rng.permutation(len(groups))]


@pytest.mark.parametrize("case", range(20))
def test_properties(case: int) -> None:
    groups = random_groups(case)
    parts = grouped_split(groups, FRACTIONS, seed=case)
    assert sorted(i for ix in parts.values() for i in ix) == list(range(len(groups)))  # a partition
    owners = {}
    for part, indices in parts.items():
        for i in indices:
            assert owners.setdefault(groups[i], part) == part, f"group {groups[i]} in two parts"
    biggest = max(groups.count(g) for g in set(groups))
    for part, frac in FRACTIONS.items():
        assert abs(len(parts[part]) - frac * len(groups)) < biggest, (part, len(parts[part]), len(groups))


def test_deterministic_by_seed_and_independent_of_input_order() -> None:
    groups = random_groups(3)
    a = grouped_split(groups, FRACTIONS, seed=5)
    assert grouped_split(groups, FRACTIONS, seed=5) == a
    assert grouped_split(groups, FRACTIONS, seed=6) != a
    members = {p: sorted(groups[i] for i in ix) for p, ix in a.items()}
    order = np.random.default_rng(0).permutation(len(groups))
    shuffled = [groups[i] for i in order]
    b = grouped_split(shuffled, FRACTIONS, seed=5)
    assert {p: sorted(shuffled[i] for i in ix) for p, ix in b.items()} == members


def test_unit_groups_give_exact_sizes() -> None:
    parts = grouped_split([str(i) for i in range(100)], FRACTIONS, seed=0)
    assert {p: len(ix) for p, ix in parts.items()} == {"train": 70, "val": 10, "test": 20}


def test_n_splits_differ_and_extend_stably() -> None:
    groups = random_groups(1)
    five = grouped_n_splits(groups, 5, 0.1, 0.2, seed=9)
    assert len(five) == 5 and len({tuple(s["test"]) for s in five}) == 5
    assert grouped_n_splits(groups, 7, 0.1, 0.2, seed=9)[:5] == five


@pytest.mark.parametrize("groups, fractions, message", [
    (["a", "a", "b"], FRACTIONS, "too few"),
    (["a", "b"], {"train": 0.5, "test": 0.6}, "sum to 1"),
    ([], FRACTIONS, "no videos"),
])
def test_errors(groups, fractions, message) -> None:
    with pytest.raises(ValueError, match=message):
        grouped_split(groups, fractions)
