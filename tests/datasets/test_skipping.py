"""datasets.skipping: unreadable videos become bad-video samples that `collate` lists."""
from types import SimpleNamespace

import pytest
import torch

from datasets import collate
from datasets.decoding import VideoDecodeError
from datasets.features import MissingFeatureError
from datasets.skipping import SkipUnreadable


class Failing:
    """A dataset whose items raise the given errors (None: a good sample)."""

    def __init__(self, errors: list) -> None:
        self.errors = errors
        self.records = [SimpleNamespace(video_name=f"v{i}.mp4") for i in range(len(errors))]

    def __len__(self) -> int:
        return len(self.errors)

    def __getitem__(self, index: int) -> dict:
        if self.errors[index] is not None:
            raise self.errors[index]
        return {"video_name": self.records[index].video_name, "x": torch.zeros(2)}


def test_undecodable_and_featureless_videos_are_listed_by_name() -> None:
    ds = SkipUnreadable(Failing([None, VideoDecodeError("v1.mp4: broken"), MissingFeatureError("no feature_0")]))
    assert len(ds) == 3 and ds.records[2].video_name == "v2.mp4"
    batch = collate([ds[i] for i in range(3)])
    assert batch["video_name"] == ["v0.mp4"] and batch["x"].shape == (1, 2)
    assert batch["bad_videos"] == [("v1.mp4", "v1.mp4: broken"), ("v2.mp4", "no feature_0")]


def test_other_errors_are_not_hidden() -> None:
    with pytest.raises(ValueError, match="a bug"):
        SkipUnreadable(Failing([ValueError("a bug")]))[0]
