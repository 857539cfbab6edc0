"""kvq.eval.correlations: correlation metrics and the logistic fit."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kvq.eval.correlations import correlation_metrics, fit_logistic4, linear_rescale, logistic4, selection_score


# ---------------------------------------------------------------------------- correlation metrics

def test_linear_rmse_matches_hand_formula() -> None:
    pred = np.array([0.2, 0.1, 0.5, 0.4, 0.9, 0.7])
    gt = np.array([1.5, 1.0, 3.2, 3.0, 4.8, 4.1])
    rescaled = (pred - pred.mean()) / math.sqrt(((pred - pred.mean()) ** 2).mean()) \
        * math.sqrt(((gt - gt.mean()) ** 2).mean()) + gt.mean()
    expected_rmse = math.sqrt(((gt - rescaled) ** 2).sum() / len(gt))
    result = correlation_metrics(pred, gt)
    assert result["fit"] == "linear"
    assert result["RMSE"] == pytest.approx(expected_rmse, abs=1e-12)
    assert np.allclose(linear_rescale(pred, gt), rescaled)
    cov = ((pred - pred.mean()) * (gt - gt.mean())).sum()
    plcc = cov / math.sqrt(((pred - pred.mean()) ** 2).sum() * ((gt - gt.mean()) ** 2).sum())
    assert result["PLCC"] == pytest.approx(plcc, abs=1e-12)
    # ranks of pred and gt are both (2, 1, 4, 3, 6, 5): rank correlations are exactly 1
    assert result["SROCC"] == pytest.approx(1.0)
    assert result["KROCC"] == pytest.approx(1.0)


def test_spearman_rank_formula_without_ties() -> None:
    pred = [3.0, 1.0, 2.0, 5.0, 4.0]
    gt = [1.0, 2.0, 3.0, 4.0, 5.0]
    d = np.array([3, 1, 2, 5, 4]) - np.array([1, 2, 3, 4, 5])
    expected = 1 - 6 * (d ** 2).sum() / (5 * (5 ** 2 - 1))
    # Kendall: 10 pairs, discordant (1,2), (1,3), (4,5) -> (7 - 3) / 10
    result = correlation_metrics(pred, gt)
    assert result["SROCC"] == pytest.approx(expected)
    assert result["KROCC"] == pytest.approx(0.4)


def test_logistic_fit_recovers_known_curve() -> None:
    true_params = (4.8, 1.2, 0.3, -0.15)  # decreasing curve: tests the signed initial guess
    x = np.linspace(-0.5, 1.1, 80)
    gt = logistic4(x, true_params)
    params = fit_logistic4(x, gt)
    assert np.allclose(logistic4(x, params), gt, atol=1e-6)
    result = correlation_metrics(x, gt, fit="logistic")
    assert result["fit"] == "logistic"
    assert result["PLCC"] == pytest.approx(1.0, abs=1e-9)
    assert result["RMSE"] == pytest.approx(0.0, abs=1e-6)
    assert result["SROCC"] == pytest.approx(-1.0)
    linear = correlation_metrics(x, gt, fit="linear")
    assert abs(linear["PLCC"]) < abs(result["PLCC"])  # the curve is non-linear


def test_logistic_fit_beats_linear_on_noisy_sigmoid() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 200)
    gt = logistic4(x, (5.0, 1.0, 0.5, 0.6)) + rng.normal(0, 0.1, x.size)
    result = correlation_metrics(x, gt, fit="logistic")
    assert result["fit"] == "logistic"
    assert result["RMSE"] < correlation_metrics(x, gt)["RMSE"]


def test_three_points_fall_back_to_linear(tmp_path, caplog) -> None:
    from kvq.eval.plots import scatter_plot

    pred, gt = [0.1, 0.5, 0.2], [1.0, 4.0, 2.5]
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_logistic4(pred, gt)
    assert correlation_metrics(pred, gt, fit="logistic")["fit"] == "linear"
    assert scatter_plot(pred, gt, tmp_path / "s.png").stat().st_size > 0


def test_constant_predictions(caplog) -> None:
    gt = [1.0, 2.0, 3.0, 4.0]
    for fit in ("linear", "logistic"):
        result = correlation_metrics([2.0] * 4, gt, fit=fit)
        assert math.isnan(result["SROCC"]) and math.isnan(result["PLCC"]) and math.isnan(result["KROCC"])
        assert result["fit"] == "linear"
        assert result["RMSE"] == pytest.approx(float(np.std(gt)))  # constant -> mean(gt)
    assert "falling back to the linear rescale" in caplog.text
    with pytest.raises(ValueError, match="constant"):
        fit_logistic4([2.0] * 4, gt)


def test_correlation_input_errors() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        correlation_metrics([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="3 items but gt has 4"):
        correlation_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="finite"):
        correlation_metrics([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="fit must be"):
        correlation_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], fit="cubic")



def test_selection_score_ranks_undefined_correlations_last() -> None:
    undefined = {"SROCC": float("nan"), "PLCC": float("nan")}
    poor = {"SROCC": -0.9, "PLCC": -0.8}
    assert selection_score(poor) == pytest.approx(-1.7)
    assert selection_score(undefined) < selection_score(poor)


def test_constant_labels_give_nan_rmse_and_null_json() -> None:
    """Any fit matches constant labels exactly: RMSE 0.0 would read as a perfect model."""
    import json

    from kvq.eval.correlations import metrics_json

    result = correlation_metrics([0.1, 0.5, 0.2, 0.9], [3.0] * 4)
    assert math.isnan(result["RMSE"]) and math.isnan(result["SROCC"])
    line = metrics_json({k: result[k] for k in ("SROCC", "PLCC", "KROCC", "RMSE")} | {"n": 4})
    assert json.loads(line) == {"SROCC": None, "PLCC": None, "KROCC": None, "RMSE": None, "n": 4}


def test_validation_metrics_of_non_finite_predictions_are_nan(tmp_path, caplog) -> None:
    """A diverged model's nan scores give nan metrics and a warning (and a plot of the finite
    points), not an exception in the middle of training."""
    from kvq.eval.correlations import selection_score, validation_metrics
    from kvq.eval.plots import scatter_plot

    pred, gt = [1.0, float("nan"), 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]
    metrics = validation_metrics(pred, gt)
    assert all(math.isnan(metrics[k]) for k in ("SROCC", "PLCC", "KROCC", "RMSE")) and metrics["n"] == 4
    assert "1 of 4 predictions are not finite" in caplog.text
    assert selection_score(metrics) == -math.inf
    assert validation_metrics([1.0, 3.0, 2.0], [1.0, 2.0, 3.0]) == correlation_metrics([1.0, 3.0, 2.0], [1.0, 2.0, 3.0])
    assert scatter_plot(pred, gt, tmp_path / "p.png", "epoch 0", metrics).stat().st_size > 0
    assert scatter_plot([float("nan")] * 3, gt[:3], tmp_path / "q.png").stat().st_size > 0
