import numpy as np
import pytest
import torch

from datasets.normalize import CLIP, IMAGENET, IMAGENET_0_255, TECHNICAL
from datasets.views import fragment_offsets, resize_crop_view, resized_view, spatial_fragments


def loop_fragments(video, fh, fw, sh, sw, aligned, rnd_h, rnd_w):
    """The seed's triple loop, with given offsets (the reference for the vectorised view)."""
    c, t, h, w = video.shape
    hgrids = [min(h // fh * i, h - sh) for i in range(fh)]
    wgrids = [min(w // fw * i, w - sw) for i in range(fw)]
    out = torch.zeros(c, t, fh * sh, fw * sw, dtype=video.dtype)
    for i, hs in enumerate(hgrids):
        for j, ws in enumerate(wgrids):
            for b in range(t // aligned):
                ts = slice(b * aligned, (b + 1) * aligned)
                y, x = hs + rnd_h[i, j, b], ws + rnd_w[i, j, b]
                out[:, ts, i * sh:(i + 1) * sh, j * sw:(j + 1) * sw] = video[:, ts, y:y + sh, x:x + sw]
    return out


def test_vectorised_fragments_equal_the_seed_loop() -> None:
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (3, 16, 400, 330), dtype=torch.uint8, generator=g)
    seed = 7
    out = spatial_fragments(video, 9, 9, 32, 32, 8, train=True, rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    rnd_h = fragment_offsets(400 // 9, 32, (9, 9, 2), True, rng)
    rnd_w = fragment_offsets(330 // 9, 32, (9, 9, 2), True, rng)
    assert torch.equal(out, loop_fragments(video, 9, 9, 32, 32, 8, rnd_h, rnd_w))


def test_test_time_fragments_equal_the_seed_loop_with_centre_offsets() -> None:
    """The separable test-time path (one offset for all patches) against the loop; frames picked
    from decoded distinct frames by frame_index, as the datasets call it."""
    g = torch.Generator().manual_seed(1)
    video = torch.randint(0, 256, (3, 6, 400, 330), dtype=torch.uint8, generator=g)
    frame_index = np.array([0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3])
    out = spatial_fragments(video, 9, 9, 32, 32, 8, train=False, frame_index=frame_index)
    rnd_h = fragment_offsets(400 // 9, 32, (9, 9, 2), False, None)
    rnd_w = fragment_offsets(330 // 9, 32, (9, 9, 2), False, None)
    expected = loop_fragments(video[:, torch.from_numpy(frame_index)], 9, 9, 32, 32, 8, rnd_h, rnd_w)
    assert torch.equal(out, expected)


def test_fragments_deterministic_at_test_and_upscaled_when_small() -> None:
    video = torch.randint(0, 256, (3, 8, 100, 60), dtype=torch.uint8)
    a = spatial_fragments(video, aligned=8)
    b = spatial_fragments(video, aligned=8)
    assert a.shape == (3, 8, 288, 288) and torch.equal(a, b)


def test_fragments_of_single_frame_and_odd_length() -> None:
    assert spatial_fragments(torch.zeros(3, 1, 300, 300, dtype=torch.uint8)).shape == (3, 1, 288, 288)
    assert spatial_fragments(torch.zeros(3, 10, 300, 300, dtype=torch.uint8), aligned=8).shape == (3, 10, 288, 288)


def test_resize_crop_view_centre_and_random() -> None:
    video = torch.randint(0, 256, (3, 2, 80, 50), dtype=torch.uint8)
    centre = resize_crop_view(video, resize=52, crop=44)
    full = resized_view(video, 52, 52)
    assert torch.equal(centre, full[..., 4:48, 4:48])
    rnd = resize_crop_view(video, resize=52, crop=44, train=True, rng=np.random.default_rng(1))
    assert rnd.shape == (3, 2, 44, 44)



def test_resize_crop_view_without_resize_keeps_the_native_frames() -> None:
    video = torch.randint(0, 256, (3, 5, 80, 50), dtype=torch.uint8)
    assert torch.equal(resize_crop_view(video, resize=None, crop=None, frame_index=np.array([4, 0, 4])),
                       video[:, [4, 0, 4]])
    with pytest.raises(ValueError, match="crop 44 needs a resize"):
        resize_crop_view(video, resize=None, crop=44)


def test_normalisations() -> None:
    x = torch.full((3, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(IMAGENET(x)[0], torch.tensor((1 - 0.485) / 0.229))
    assert torch.allclose(IMAGENET_0_255(x)[0], torch.tensor((255 - 0.485) / 0.229))
    assert torch.allclose(TECHNICAL(x)[0], torch.tensor((255 - 123.675) / 58.395))
    assert torch.allclose(CLIP(x)[2], torch.tensor((1 - 0.40821073) / 0.27577711))


def test_normalisation_leaves_a_float_input_unchanged() -> None:
    x = torch.full((3, 1, 2, 2), 100.0)
    out = TECHNICAL(x)
    assert torch.equal(x, torch.full((3, 1, 2, 2), 100.0))
    assert torch.allclose(out[0], torch.tensor((100 - 123.675) / 58.395))


# smallest frames, non-finite views

from datasets.views import (NATIVE_MIN_SIDE, NonFiniteViewError, VideoTooSmallError, apply_view,  # noqa: E402
                            assert_finite, check_frame_size, min_frame_size)
from datasets.decoding import VideoDecodeError  # noqa: E402

RESCALING_VIEWS = {
    "technical": {"fragments_h": 9, "fragments_w": 9, "fsize_h": 32, "fsize_w": 32, "aligned": 8},
    "aesthetic": {"size_h": 112, "size_w": 112},
    "simpleVQA": {"resize": 520, "crop": 448},
}


@pytest.mark.parametrize("name", list(RESCALING_VIEWS))
@pytest.mark.parametrize("size", [(1, 1), (16, 16), (2, 300)])
def test_rescaling_views_accept_any_frame(name, size) -> None:
    assert min_frame_size(name, RESCALING_VIEWS[name]) == (1, 1)
    video = torch.randint(0, 256, (3, 4, *size), dtype=torch.uint8)
    out = apply_view(name, video, RESCALING_VIEWS[name], False, None)
    assert out.shape[-2:] == {"technical": (288, 288), "aesthetic": (112, 112), "simpleVQA": (448, 448)}[name]
    check_frame_size("v.mp4", *size, {name: RESCALING_VIEWS[name]})


def test_native_simplevqa_view_needs_33_pixels_a_side() -> None:
    views = {"simpleVQA": {"resize": None, "crop": None}}
    assert min_frame_size("simpleVQA", views["simpleVQA"]) == (NATIVE_MIN_SIDE, NATIVE_MIN_SIDE) == (33, 33)
    check_frame_size("v.mp4", 33, 33, views)
    with pytest.raises(VideoTooSmallError, match=r"v.mp4: frames of 16x16 .* smaller than the 33x33 the view "
                                                 r"'simpleVQA' needs") as e:
        check_frame_size("v.mp4", 16, 16, views)
    assert isinstance(e.value, VideoDecodeError)  # skipped like an undecodable video (skip_bad_videos)
    with pytest.raises(VideoTooSmallError, match="40x32"):
        check_frame_size("v.mp4", 32, 40, views)


def test_the_16x16_nan_comes_from_a_1x1_feature_map_std_and_is_refused() -> None:
    """The reported NaN: a 16x16 native frame through EfficientNet-Lite0's stride-16 stage is a 1x1
    map, whose unbiased std is 0/0; mean_std_pool now refuses it instead of returning NaN."""
    from models.simplevqa import mean_std_pool

    assert torch.isnan(torch.std(torch.ones(1, 2, 1), dim=2)).all()  # the root cause
    with pytest.raises(ValueError, match="1x1 feature map has no standard deviation"):
        mean_std_pool(torch.rand(2, 4, 1, 1))
    assert torch.isfinite(mean_std_pool(torch.rand(2, 4, 2, 1))).all()


def test_assert_finite() -> None:
    t = torch.zeros(3)
    assert assert_finite(t, "x") is t
    assert_finite(torch.zeros(3, dtype=torch.uint8), "x")
    with pytest.raises(NonFiniteViewError, match=r"video a.mp4, view 'simpleVQA': 2 of 3 values are NaN or infinite"):
        assert_finite(torch.tensor([1.0, float("nan"), float("inf")]), "video a.mp4, view 'simpleVQA'")


def test_a_16x16_video_is_refused_when_opened_by_the_native_view(tmp_path) -> None:
    from datasets import build_dataset
    from tests.media import make_video

    make_video(tmp_path / "small.mp4", size="16x16", frames=10)
    (tmp_path / "a.csv").write_text("filename,score\nsmall.mp4,3\n")
    spec = {"type": "ViewDecompositionDataset_add_forSimpleVQA", "args": {
        "phase": "test", "anno_file": str(tmp_path / "a.csv"), "data_prefix": str(tmp_path),
        "normalization": "imagenet", "data_prefix_3D": None,
        "sample_types": {"simpleVQA": {"resize": None, "crop": None, "clip_len": 4, "frame_interval": 1,
                                       "t_frag": 4, "num_clips": 1}}}}
    ds = build_dataset(spec)
    with pytest.raises(VideoTooSmallError, match="16x16 .* smaller than the 33x33"):
        ds[0]
    from datasets.skipping import SkipUnreadable

    assert "smaller than the 33x33" in SkipUnreadable(ds)[0]["error"]  # listed, not scored
    spec["args"]["sample_types"]["simpleVQA"].update(resize=64, crop=48)  # rescaled: any size is fine
    assert build_dataset(spec)[0]["simpleVQA"].shape[-2:] == (48, 48)
