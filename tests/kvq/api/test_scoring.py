"""kvq.api.scoring: the data spec that scores, and a dataset scored with unreadable videos listed."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from datasets.decoding import VideoDecodeError
from kvq.api.scoring import score_dataset, scoring_spec, scoring_split


class Videos:
    """Labelled one-value 'videos'; the names in `bad` cannot be decoded."""

    def __init__(self, values: list[float], bad: tuple[str, ...] = ()) -> None:
        self.values = values
        self.bad = bad
        self.records = [SimpleNamespace(video_name=f"v{i}.mp4") for i in range(len(values))]

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> dict:
        name = self.records[index].video_name
        if name in self.bad:
            raise VideoDecodeError(f"{name}: not a video")
        return {"video_name": name, "label": 10.0 * index, "x": torch.tensor([self.values[index]])}


class Double(nn.Module):
    def forward(self, inputs: dict) -> dict:
        return {"score": 2 * inputs["x"]}  # [B, 1]


def test_score_dataset_lists_unreadable_videos_and_scores_the_others_in_order() -> None:
    preds, errors = score_dataset(Double(), Videos([1.0, 2.0, 3.0], bad=("v1.mp4",)), torch.device("cpu"),
                                  batch_size=2, progress=False)
    assert preds.names == ["v0.mp4", "v2.mp4"] and preds.scores == [2.0, 6.0] and preds.labels == [0.0, 20.0]
    assert errors == [("v1.mp4", "v1.mp4: not a video")]
    with pytest.raises(VideoDecodeError, match="v1.mp4"):
        score_dataset(Double(), Videos([1.0, 2.0], bad=("v1.mp4",)), torch.device("cpu"), progress=False, skip=False)


def test_scoring_spec_takes_test_then_val_then_train_with_phase_test() -> None:
    train = {"type": "T", "args": {"phase": "train", "anno_file": "train.csv"}}
    cfg = {"data": {"train": train, "val": {"type": "T", "args": {"phase": "test", "anno_file": "val.csv"}}}}
    assert scoring_split(cfg) == "val"
    split, spec = scoring_spec(cfg, "train")
    assert split == "train" and spec["args"] == {"phase": "test", "anno_file": "train.csv"}
    assert train["args"]["phase"] == "train"  # the config is left as it was
    with pytest.raises(FileNotFoundError, match="no data.test section"):
        scoring_split(cfg, "test")
