import numpy as np
import pytest

from datasets.samplers import UnifiedFrameSampler, build_sampler


def test_seed_formula_random_offsets_in_training() -> None:
    s = UnifiedFrameSampler(fsize_t=32, fragments_t=1, frame_interval=4)
    rng = np.random.default_rng(0)
    for _ in range(50):
        inds = s(300, train=True, rng=rng)
        start = inds[0]
        assert 0 <= start < 300 - 128
        assert np.array_equal(inds, start + 4 * np.arange(32))


def test_short_video_wraps_modulo() -> None:
    s = UnifiedFrameSampler(32, 1, 4)
    inds = s(40, train=True, rng=np.random.default_rng(0))
    assert np.array_equal(inds, (4 * np.arange(32)) % 40)
    assert inds.dtype == np.int32


def test_test_time_is_deterministic_and_centred() -> None:
    s = UnifiedFrameSampler(1, 8, 10)
    a, b = s(400), s(400)
    assert np.array_equal(a, b)
    tlength = 400 // 8
    assert np.array_equal(a, tlength * np.arange(8) + (tlength - 10) // 2)


def test_build_sampler_without_t_frag_is_dover_convention() -> None:
    s = build_sampler({"clip_len": 32, "num_clips": 3, "frame_interval": 4, "t_frag": None})
    assert (s.fsize_t, s.fragments_t, s.num_clips) == (32, 3, 1)
    inds = s(300)
    tlength = 100
    expected = np.concatenate([tlength * i + 4 * np.arange(32) for i in range(3)]) % 300  # offsets 0, wrap
    assert np.array_equal(inds, expected)


def test_build_sampler_with_t_frag() -> None:
    s = build_sampler({"clip_len": 8, "num_clips": 1, "frame_interval": 10, "t_frag": 8})
    assert (s.fsize_t, s.fragments_t, s.num_clips) == (1, 8, 1)
    assert len(s(100)) == 8


def test_fewer_frames_than_clip_and_single_frame() -> None:
    s = UnifiedFrameSampler(32, 3, 4)
    assert set(s(1).tolist()) == {0}
    assert s(5).max() < 5


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError):
        UnifiedFrameSampler(0, 1)
