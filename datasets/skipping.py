"""Skipping videos that cannot be read, so that one bad file does not stop the others.

`SkipUnreadable` wraps a dataset: a video that cannot be decoded (VideoDecodeError), or whose
cached SlowFast features are missing or unreadable (MissingFeatureError), becomes a
`{"bad_video": video_name, "error": message}` sample, which `datasets.collate` leaves out of the
batch and lists under 'bad_videos' as (video_name, error) pairs. Scoring uses it always (the
pairs go to `<output>.errors.csv`), training when the config says `skip_bad_videos: true` (the
pairs are listed after the epoch).
"""
from __future__ import annotations

import logging
from typing import Any

from torch.utils.data import Dataset

from datasets.decoding import VideoDecodeError
from datasets.features import MissingFeatureError

log = logging.getLogger(__name__)


class SkipUnreadable(Dataset):
    """`dataset` (one with `records`), unreadable videos turned into bad-video samples."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    @property
    def records(self) -> list:
        """The wrapped dataset's annotation records."""
        return self.dataset.records

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.dataset[index]
        except (VideoDecodeError, MissingFeatureError) as e:
            name = self.dataset.records[index].video_name
            log.warning("skipping unreadable video %s: %s", name, e)
            return {"bad_video": name, "error": str(e)}
