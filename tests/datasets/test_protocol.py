"""The same video twice: in one list, or in train and val/test (datasets/protocol.py, preflight)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from datasets.annotations import AnnotationError, read_annotations
from datasets.protocol import duplicate_videos
from kvq.config import load_config
from kvq.engine.preflight import PreflightError, check_scoring, check_training
from tests.media import make_tiny_dataset, simplevqa_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("protocol"), n=3, frames=8)


def config(tmp_path: Path, data: Path, train: str, val: str, **val_args) -> Path:
    (tmp_path / "train.csv").write_text(train)
    (tmp_path / "val.csv").write_text(val)
    cfg = simplevqa_config(data)
    cfg["data"]["train"]["args"]["anno_file"] = str(tmp_path / "train.csv")
    cfg["data"]["val"]["args"].update(anno_file=str(tmp_path / "val.csv"), **val_args)
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_one_list_naming_a_file_twice_under_two_spellings_is_an_error(data: Path, tmp_path: Path) -> None:
    anno = tmp_path / "list.csv"
    anno.write_text("filename,score\nv0.mp4,1\nv1.mp4,2\n./v0.mp4,3\n")
    with pytest.raises(AnnotationError, match=r"'./v0.mp4' on lines 2 and 4.*allow_repeats"):
        read_annotations(anno, data)
    assert len(read_annotations(anno, data, allow_repeats=True)) == 3


def test_a_train_video_in_val_is_named_with_both_lines_before_any_work(data: Path, tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, data, "filename,score\nv0.mp4,1\nv1.mp4,2\nv2.mp4,3\n",
                             "filename,score\nw0.mp4,1\n./v0.mp4,2\nw1.mp4,3\n"))
    with pytest.raises(PreflightError) as info:
        check_training(cfg)
    text = str(info.value)
    assert "'./v0.mp4' (data.val: " in text and "val.csv line 3) is the same video as 'v0.mp4' (data.train: " in text
    assert "train.csv line 2" in text


def test_a_copy_of_a_train_video_under_another_name_is_found_by_content(data: Path, tmp_path: Path) -> None:
    shutil.copy(data / "v1.mp4", data / "copy_of_v1.mp4")
    cfg = load_config(config(tmp_path, data, "filename,score\nv0.mp4,1\nv1.mp4,2\nv2.mp4,3\n",
                             "filename,score\nw0.mp4,1\ncopy_of_v1.mp4,2\nw1.mp4,3\n"))
    with pytest.raises(PreflightError, match=r"'copy_of_v1.mp4' \(data.val: .*is the same video as 'v1.mp4'"):
        check_training(cfg)


def test_repeats_in_one_list_are_allowed_only_by_the_flag(data: Path, tmp_path: Path) -> None:
    train = "filename,score\nv0.mp4,1\nv1.mp4,2\nv2.mp4,3\n"
    val = "filename,score\nw0.mp4,1\nw1.mp4,2\nw1.mp4,2\n"
    with pytest.raises(PreflightError, match="duplicate file names"):
        check_training(load_config(config(tmp_path, data, train, val)))
    check_training(load_config(config(tmp_path, data, train, val, allow_repeats=True)))


def test_val_and_test_may_share_videos_but_scoring_one_list_checks_its_repeats(data: Path, tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, data, "filename,score\nv0.mp4,1\nv1.mp4,2\nv2.mp4,3\n",
                             "filename,score\nw0.mp4,1\nw2.mp4,2\nw1.mp4,3\n"))
    check_training(cfg)  # data.test (unlabeled.csv) lists w0 and w2 too
    (tmp_path / "val.csv").write_text("filename,score\nw0.mp4,1\n./w0.mp4,2\n")
    with pytest.raises(PreflightError, match="w0.mp4"):
        check_scoring(cfg, "val", str(tmp_path / "none.pth"))


def test_duplicate_videos_reports_each_pair_once(data: Path) -> None:
    train = read_annotations(data / "train.csv", data)
    pairs = duplicate_videos({"data.train": ("train.csv", train), "data.test": ("t.csv", train[:2])}, against="data.train")
    assert len(pairs) == 2 and all("is the same video as" in p for p in pairs)
