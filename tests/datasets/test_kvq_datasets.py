from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import build_dataset, collate
from datasets.decoding import VideoDecodeError
from datasets.features import MissingFeatureError, feature_path, write_random_features
from tests.media import make_video


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ds")
    make_video(d / "a.mp4", size="72x128", frames=45)
    make_video(d / "b.mp4", size="128x72", frames=20, source="mandelbrot")
    (d / "broken.mp4").write_bytes(b"not a video")
    (d / "ksvqe.txt").write_text("a.mp4,0,1,3.5\nb.mp4,0,2,2.0\n")
    (d / "kvq.csv").write_text("filename,score\na.mp4,3.5\nb.mp4,2.0\n")
    (d / "test.csv").write_text("filename\nb.mp4\na.mp4\n")
    (d / "bad.csv").write_text("filename,score\na.mp4,3.5\nbroken.mp4,1.0\n")
    for video in ("a.mp4", "b.mp4", "broken.mp4"):
        for i in range(8):
            for pathway, dim in (("slow", 2048), ("fast", 256)):
                p = feature_path(d / "feat", video, i, pathway)
                p.parent.mkdir(parents=True, exist_ok=True)
                np.save(p, np.full((1, dim, 1, 1, 1), i, dtype=np.float32))
    return d


def ksvqe_spec(root: Path, phase: str = "test", anno: str = "ksvqe.txt", num_clips: int = 3) -> dict:
    return {"type": "ViewDecompositionDataset_KVQ", "args": {
        "phase": phase, "anno_file": str(root / anno), "data_prefix": str(root), "anno_format": "auto",
        "decoder": "decord",
        "sample_types": {"technical": {"fragments_h": 9, "fragments_w": 9, "fsize_h": 32, "fsize_w": 32,
                                       "aligned": 8, "clip_len": 8, "frame_interval": 2,
                                       "num_clips": num_clips, "t_frag": None, "size_h": 112, "size_w": 112}}}}


def simplevqa_spec(root: Path, phase: str = "test", anno: str = "kvq.csv", norm: str = "imagenet") -> dict:
    return {"type": "ViewDecompositionDataset_add_forSimpleVQA", "args": {
        "phase": phase, "anno_file": str(root / anno), "data_prefix": str(root), "anno_format": "auto",
        "decoder": "decord", "data_prefix_3D": str(root / "feat"), "feature_type": "SlowFast",
        "normalization": norm,
        "sample_types": {"simpleVQA": {"resize": 130, "crop": 112, "clip_len": 8, "frame_interval": 2,
                                       "t_frag": 8, "num_clips": 1}}}}


def test_ksvqe_sample_keys_and_shapes(root: Path) -> None:
    s = build_dataset(ksvqe_spec(root))[0]
    assert s["technical"].shape == (3, 24, 288, 288) and s["technical"].dtype == torch.uint8
    assert "fragment" not in s  # KSVQE reads "technical": one tensor collated, pinned and copied
    assert s["resize_video"].shape == (3, 24, 112, 112) and s["resize_video"].dtype == torch.uint8
    assert s["normalization"] == {"technical": "technical", "resize_video": "clip"}
    assert s["num_clips"] == {"technical": 3} and s["clip_len"] == {"technical": 8}
    assert s["frame_inds"]["technical"].shape == (24,)
    assert (s["label"], s["dis_label"], s["video_name"]) == (3.5, 1, "a.mp4")
    assert s["original_shape"].tolist() == [45, 128, 72]


def test_test_phase_is_deterministic(root: Path) -> None:
    ds = build_dataset(ksvqe_spec(root))
    assert torch.equal(ds[1]["technical"], ds[1]["technical"])


def test_train_phase_is_random_but_seedable(root: Path) -> None:
    ds = build_dataset(ksvqe_spec(root, phase="train", num_clips=1))
    torch.manual_seed(0)
    a = ds[0]["technical"]
    torch.manual_seed(0)
    b = ds[0]["technical"]
    c = ds[0]["technical"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_simplevqa_sample(root: Path) -> None:
    s = build_dataset(simplevqa_spec(root))[1]
    assert s["simpleVQA"].shape == (3, 8, 112, 112)
    assert s["feat"].shape == (8, 2304)
    assert torch.equal(s["feat"][:, 0], torch.arange(8, dtype=torch.float32))
    assert s["simpleVQA"].dtype == torch.uint8 and s["normalization"] == {"simpleVQA": "imagenet"}
    seed = build_dataset(simplevqa_spec(root, norm="reference_0_255"))[1]
    assert torch.equal(seed["simpleVQA"], s["simpleVQA"]) and seed["normalization"] == {"simpleVQA": "reference_0_255"}


def test_unlabeled_annotations_give_nan_labels(root: Path) -> None:
    ds = build_dataset(simplevqa_spec(root, anno="test.csv"))
    assert not ds.has_labels
    assert [r.video_name for r in ds.records] == ["b.mp4", "a.mp4"]
    assert np.isnan(ds[0]["label"])


def test_missing_feature_file_is_named(root: Path, tmp_path: Path) -> None:
    spec = simplevqa_spec(root)
    spec["args"]["data_prefix_3D"] = str(tmp_path)
    with pytest.raises(MissingFeatureError, match="feature_0_slow_feature.npy"):
        build_dataset(spec)[0]


@pytest.mark.parametrize("content, message", [(b"\x93NUMPY truncated", "cannot be read"),
                                              (None, "holds 3 values, expected 256")])
def test_unreadable_or_wrong_sized_feature_file_is_named(root: Path, tmp_path: Path, content, message) -> None:
    spec = simplevqa_spec(root)
    spec["args"]["data_prefix_3D"] = str(tmp_path)
    ds = build_dataset(spec)
    write_random_features(tmp_path, [ds.records[0].video_name], np.random.default_rng(0))
    bad = feature_path(tmp_path, ds.records[0].video_name, 3, "fast")
    if content is None:
        np.save(bad, np.zeros(3, np.float32))
    else:
        bad.write_bytes(content)
    with pytest.raises(MissingFeatureError, match=f"feature_3_fast_feature.npy.*{message}"):
        ds[0]


def test_bad_video_raises_unless_skipped(root: Path) -> None:
    from datasets.skipping import SkipUnreadable

    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        build_dataset(simplevqa_spec(root, anno="bad.csv"))[1]
    ds = SkipUnreadable(build_dataset(simplevqa_spec(root, phase="train", anno="bad.csv")))
    batch = collate([ds[0], ds[1]])
    assert batch["simpleVQA"].shape[0] == 1
    (name, error), = batch["bad_videos"]
    assert name == ds.records[1].video_name and "broken.mp4" in error


def test_clip_inputs_normalise_uint8_views_as_the_samples_did(root: Path) -> None:
    """uint8 views normalised after the copy (and the clip split) equal the float views the
    dataset used to send, normalised per sample and split on the host."""
    from datasets.normalize import CLIP, IMAGENET, IMAGENET_0_255, TECHNICAL
    from kvq.eval.predict import clip_inputs, split_clips

    ds = build_dataset(ksvqe_spec(root))
    samples = [ds[0], ds[1]]
    inputs, n = clip_inputs(collate(samples), torch.device("cpu"))
    old = split_clips(collate([{**s, "technical": TECHNICAL(s["technical"]), "resize_video": CLIP(s["resize_video"])}
                               for s in samples]), 3)
    assert n == 3 and "fragment" not in inputs
    for key in ("technical", "resize_video"):
        assert inputs[key].dtype == torch.float32 and torch.equal(inputs[key], old[key]), key
    for norm, expected in (("imagenet", IMAGENET), ("reference_0_255", IMAGENET_0_255)):
        s = build_dataset(simplevqa_spec(root, norm=norm))[1]
        got = clip_inputs(collate([s]), torch.device("cpu"))[0]["simpleVQA"]
        assert torch.equal(got, expected(s["simpleVQA"])[None]), norm


def test_simplevqa_without_feature_folder_sends_no_features(root: Path) -> None:
    """data_prefix_3D null: no SlowFast features read (a backbone with motion_channels: 0)."""
    spec = simplevqa_spec(root, norm="inception")
    spec["args"]["data_prefix_3D"] = None
    s = build_dataset(spec)[0]
    assert "feat" not in s and s["normalization"] == {"simpleVQA": "inception"}
    assert s["simpleVQA"].shape == (3, 8, 112, 112)


def test_native_size_clips_of_both_orientations_collate_padded_with_their_sizes(root: Path) -> None:
    """resize null: a.mp4 (72x128, WxH) and b.mp4 (128x72) go in one batch, padded to 128x128 with
    their sizes; clip_inputs repeats the sizes per clip; fixed-size views are stacked as before."""
    from kvq.eval.predict import clip_inputs

    spec = simplevqa_spec(root)
    spec["args"]["sample_types"]["simpleVQA"].update(resize=None, crop=None, clip_len=4, t_frag=4, num_clips=2)
    ds = build_dataset(spec)
    a, b = ds[0], ds[1]
    batch = collate([a, b])
    assert batch["simpleVQA"].shape == (2, 3, 8, 128, 128)
    assert batch["simpleVQA_frame_size"].tolist() == [[128, 72], [72, 128]]
    assert torch.equal(batch["simpleVQA"][0, :, :, :, :72], a["simpleVQA"])
    assert torch.equal(batch["simpleVQA"][1, :, :, :72], b["simpleVQA"])
    assert not batch["simpleVQA"][0, :, :, :, 72:].any() and not batch["simpleVQA"][1, :, :, 72:].any()
    inputs, n = clip_inputs(batch, torch.device("cpu"))
    assert n == 2 and inputs["simpleVQA_frame_size"].tolist() == [[128, 72], [128, 72], [72, 128], [72, 128]]
    assert "simpleVQA_frame_size" not in collate([a, a])
    fixed = build_dataset(simplevqa_spec(root))
    assert set(collate([fixed[0], fixed[1]])) == set(collate([fixed[0]]))
