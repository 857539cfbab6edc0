"""kvq.eval.predictions: prediction CSVs written and read back, problems named by line."""
from __future__ import annotations

import pytest

from kvq.eval.predictions import ScoringError, read_prediction_csv, write_errors, write_predictions


def test_predictions_round_trip(tmp_path) -> None:
    path = write_predictions(tmp_path / "p.csv", ["a.mp4", "b.mp4"], [0.5, 1.25], calibrated=[3.0, 4.5])
    assert path.read_text().splitlines() == ["filename,score,calibrated_score", "a.mp4,0.500000,3.000000",
                                             "b.mp4,1.250000,4.500000"]
    assert read_prediction_csv(path) == {"a.mp4": 0.5, "b.mp4": 1.25}
    errors = write_errors(tmp_path / "e.csv", [("c.mp4", "cannot decode")])
    assert errors.read_text().splitlines() == ["filename,error", "c.mp4,cannot decode"]


def test_prediction_csv_problems_name_lines(tmp_path) -> None:
    path = tmp_path / "prediction.csv"
    path.write_text("filename,score\na,1\n\nb,inf\nc,abc\na,2\nd\n")
    with pytest.raises(ScoringError) as info:
        read_prediction_csv(path)
    text = str(info.value)
    assert "line 4: score 'inf' for 'b' is not finite" in text
    assert "line 5: score 'abc' for 'c' is not a number" in text
    assert "duplicate filename 'a' on lines 2, 6" in text
    assert "line 7: expected 2 fields, got 1" in text


def test_prediction_csv_missing_column(tmp_path) -> None:
    path = tmp_path / "prediction.csv"
    path.write_text("filename,mos\na,1\n")
    with pytest.raises(ScoringError, match="missing score"):
        read_prediction_csv(path)
