"""metric_score.py CLI: both argument forms, JSON last line, Codalab scores.txt, exit 2 on bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import metric_score
from tests.kvq.eval.test_challenge import (
    HAND_PLCC,
    HAND_SROCC,
    NONSOURCE,
    PAIRS,
    PRED,
    SOURCE,
    TRUTH,
    write_prediction,
    write_truth_dir,
)

ROOT = Path(__file__).resolve().parents[2]
HAND_SCORE = 0.45 * HAND_SROCC + 0.45 * HAND_PLCC + 0.05 * 3 / 4 + 0.05 * 2 / 3


@pytest.fixture
def good(tmp_path) -> tuple[Path, Path]:
    """(prediction.csv, truth dir) of the hand-computed case."""
    write_truth_dir(tmp_path / "ref")
    write_prediction(tmp_path / "prediction.csv")
    return tmp_path / "prediction.csv", tmp_path / "ref"


def run_bad(capsys, prediction: Path, truth_dir: Path) -> str:
    """Run the CLI expecting exit status 2; return its stderr."""
    assert metric_score.main([str(prediction), str(truth_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_prediction_form_json_last_line(good, capsys) -> None:
    assert metric_score.main([str(good[0]), str(good[1])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {"score", "SROCC", "PLCC", "acc_nonsource", "acc_source"}
    assert result["score"] == pytest.approx(HAND_SCORE, abs=1e-12)
    assert result["SROCC"] == pytest.approx(HAND_SROCC, abs=1e-12)
    assert result["PLCC"] == pytest.approx(HAND_PLCC, abs=1e-12)
    assert result["acc_nonsource"] == pytest.approx(0.75)
    assert result["acc_source"] == pytest.approx(2 / 3)
    assert any(line.startswith("videos scored") and line.endswith("5") for line in lines)


def test_codalab_form_writes_scores_txt(tmp_path, capsys) -> None:
    write_truth_dir(tmp_path / "input" / "ref")
    (tmp_path / "input" / "res").mkdir()
    write_prediction(tmp_path / "input" / "res" / "prediction.csv")
    out = tmp_path / "output"
    assert metric_score.main([str(tmp_path / "input"), str(out)]) == 0
    values = dict(line.split(": ") for line in (out / "scores.txt").read_text().splitlines())
    assert list(values) == ["score", "SROCC", "PLCC", "acc_nonsource", "acc_source"]
    assert float(values["score"]) == pytest.approx(HAND_SCORE, abs=1e-12)
    assert float(values["acc_source"]) == pytest.approx(2 / 3)
    assert [p.name for p in out.iterdir()] == ["scores.txt"]  # no temporary file left behind


def test_codalab_form_missing_prediction(tmp_path, capsys) -> None:
    write_truth_dir(tmp_path / "input" / "ref")
    (tmp_path / "input" / "res").mkdir()
    assert metric_score.main([str(tmp_path / "input"), str(tmp_path / "output")]) == 2
    assert "prediction.csv: file not found" in capsys.readouterr().err
    assert not (tmp_path / "output" / "scores.txt").exists()


def test_missing_video(good, capsys) -> None:
    write_prediction(good[0], {k: v for k, v in PRED.items() if k != "c"})
    assert "prediction is missing 1 of 5 truth videos: 'c'" in run_bad(capsys, *good)


def test_duplicate_filename(good, capsys) -> None:
    good[0].write_text("filename,score\na,1.5\nb,1.0\nc,3\nd,3\ne,5\nb,2\n")
    assert "duplicate filename 'b' on lines 3, 7" in run_bad(capsys, *good)


def test_nan_score(good, capsys) -> None:
    write_prediction(good[0], {**PRED, "d": float("nan")})
    assert "line 5: score 'nan' for 'd' is not finite" in run_bad(capsys, *good)


def test_non_numeric_score(good, capsys) -> None:
    write_prediction(good[0], {**PRED, "e": "good"})
    assert "line 6: score 'good' for 'e' is not a number" in run_bad(capsys, *good)


def test_missing_sheet(good, capsys) -> None:
    write_truth_dir(good[1], pairs={"nonsource": NONSOURCE})
    assert "sheet 'source' is missing" in run_bad(capsys, *good)


def test_missing_pair_column(good, capsys) -> None:
    write_truth_dir(good[1], pairs={"nonsource": NONSOURCE, "source": SOURCE[["video1", "video2"]]})
    assert "sheet 'source' needs columns video1, video2, rank" in run_bad(capsys, *good)


def test_missing_prediction_column(good, capsys) -> None:
    good[0].write_text("filename,mos\na,1\n")
    assert "missing score" in run_bad(capsys, *good)


def test_pair_video_not_in_truth(good, capsys) -> None:
    pairs = {**PAIRS, "source": pd.concat([SOURCE, pd.DataFrame({"video1": ["zz"], "video2": ["a"], "rank": [1]})])}
    write_truth_dir(good[1], pairs=pairs)
    assert "sheet 'source' names 1 video(s) not in the truth: 'zz'" in run_bad(capsys, *good)


def test_all_problems_reported_together(good, capsys) -> None:
    good[0].write_text("filename,score\na,1\na,2\nb,nan\nc,x\n")
    write_truth_dir(good[1], pairs={"nonsource": NONSOURCE})
    err = run_bad(capsys, *good)
    for needle in ("duplicate filename 'a'", "score 'nan' for 'b'", "score 'x' for 'c'",
                   "missing 2 of 5 truth videos: 'd', 'e'", "sheet 'source' is missing"):
        assert needle in err


def test_nonexistent_first_argument(tmp_path, capsys) -> None:
    assert metric_score.main([str(tmp_path / "nope.csv"), str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_constant_predictions_json_null(good, capsys) -> None:
    write_prediction(good[0], dict.fromkeys(TRUTH, 2.0))
    assert metric_score.main([str(good[0]), str(good[1])]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["SROCC"] is None and result["score"] is None
    assert result["acc_source"] == pytest.approx(1 / 3)  # all ties -> rank 1; source ranks 2, 1, 2


def test_subprocess_exit_status(good) -> None:
    """The script entry point turns a ScoringError into exit status 2 (in-process tests cover the rest)."""
    write_prediction(good[0], {"a": 1.0})
    bad = subprocess.run([sys.executable, "metric_score.py", str(good[0]), str(good[1])],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "missing 4 of 5 truth videos" in bad.stderr
