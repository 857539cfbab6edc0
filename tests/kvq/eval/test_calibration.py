"""Calibration: logistic fit with a linear fallback, dict/checkpoint round trip, clipping."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from kvq.eval.calibration import Calibration, calibration_indices, checkpoint_calibration, fit_calibration
from kvq.core.checkpoint import load_checkpoint_file
from kvq.core.io import atomic_torch_save
from kvq.eval.correlations import logistic4


def test_logistic_fit_recovers_a_monotone_map_and_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(-2, 2, 200)
    mos = logistic4(raw, (4.8, 1.2, 0.3, 0.5)) + rng.normal(0, 0.02, raw.size)
    cal = fit_calibration(raw, mos, "KVQ MOS", (1.0, 5.0))
    assert cal.kind == "logistic" and cal.n == 200 and cal.scale == "KVQ MOS"
    assert np.sqrt(np.mean((cal.apply(raw) - mos) ** 2)) < 0.05
    path = tmp_path / "best.pth"
    atomic_torch_save({"state_dict": {}, "calibration": cal.to_dict()}, path)
    loaded = checkpoint_calibration(load_checkpoint_file(path), str(path))
    assert loaded == cal
    np.testing.assert_array_equal(loaded.apply(raw), cal.apply(raw))


def test_line_when_too_few_points_or_the_logistic_is_worse() -> None:
    cal = fit_calibration([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    assert cal.kind == "linear"
    np.testing.assert_allclose(cal.params, (1.0, 1.0), atol=1e-9)
    np.testing.assert_allclose(cal.apply([0.5, 1.5]), [1.5, 2.5])
    rng = np.random.default_rng(1)
    raw = rng.uniform(0, 1, 50)
    linear = fit_calibration(raw, 2 * raw + 1)  # an exact line: the logistic cannot beat it
    assert linear.kind == "linear"


def test_line_when_the_logistic_would_be_a_step(caplog) -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(-1, 1, 40)
    mos = np.where(raw < 0.1, 2.0, 4.0) + rng.normal(0, 0.05, raw.size)
    with caplog.at_level(logging.WARNING, logger="kvq.eval.calibration"):
        cal = fit_calibration(raw, mos, mos_range=(0.0, 6.0))
    assert cal.kind == "linear" and "near-step" in caplog.text
    assert len(set(np.round(cal.apply(raw), 9))) == raw.size  # no ties: the ranking is kept


def test_constant_outputs_map_to_the_mean_and_decreasing_data_is_followed(caplog) -> None:
    cal = fit_calibration([0.3] * 6, [1, 2, 3, 4, 5, 3])
    assert cal.kind == "linear"
    np.testing.assert_allclose(cal.apply([0.3, 9.0]), [3.0, 3.0])
    with caplog.at_level(logging.WARNING, logger="kvq.eval.calibration"):
        falling = fit_calibration(np.arange(10.0), 5 - 0.4 * np.arange(10.0))
    assert "do not rise with MOS" in caplog.text
    assert falling.apply(0.0) > falling.apply(9.0)


def test_scores_are_clipped_to_the_scale() -> None:
    cal = fit_calibration([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], mos_range=(1.0, 5.0))
    np.testing.assert_allclose(cal.apply([-10.0, 10.0]), [1.0, 5.0])


def test_bad_input_and_bad_dicts_are_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fit_calibration([1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        fit_calibration([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="ckpt.pth.*4 finite params"):
        Calibration.from_dict({"kind": "logistic", "params": [1, 2], "scale": "MOS", "min": 1, "max": 5, "n": 3},
                              "ckpt.pth")
    with pytest.raises(ValueError, match="lacks"):
        Calibration.from_dict({"kind": "linear"})


def test_checkpoint_without_calibration_warns(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="kvq.eval.calibration"):
        assert checkpoint_calibration({"state_dict": {"w": torch.zeros(1)}}, "reference.pth") is None
    assert "reference.pth has no calibration" in caplog.text


def test_calibration_subset_is_seeded_and_sorted() -> None:
    assert calibration_indices(5, None, 0) == [0, 1, 2, 3, 4]
    assert calibration_indices(5, 10, 0) == [0, 1, 2, 3, 4]
    picked = calibration_indices(100, 7, 3)
    assert len(picked) == 7 and picked == sorted(set(picked)) and picked == calibration_indices(100, 7, 3)
