"""kvq.eval.challenge: the challenge score, its readers and its input validation."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kvq.eval.challenge import ScoringError, challenge_score, read_truth_dir, score_files, weighted_challenge_score
from kvq.eval.predictions import read_prediction_csv

# Hand-computed case: 5 videos, one tie in the predictions (c == d).
TRUTH = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}
PRED = {"a": 1.5, "b": 1.0, "c": 3.0, "d": 3.0, "e": 5.0}
# Ranks of PRED (ties averaged): b=1, a=2, c=d=3.5, e=5; ranks of TRUTH: 1..5, both with mean 3.
# Deviations: truth (-2,-1,0,1,2), pred (-1,-2,0.5,0.5,2): sum of products 8.5, squares 10 and 9.5.
HAND_SROCC = 8.5 / math.sqrt(10 * 9.5)
# Raw PLCC: pred mean 2.7, deviations (-1.2,-1.7,0.3,0.3,2.3); products sum 9.0, squares 9.8 and 10.
HAND_PLCC = 9.0 / math.sqrt(9.8 * 10)
NONSOURCE = pd.DataFrame({
    "video1": ["a", "c", "d", "e"],
    "video2": ["b", "d", "c", "a"],
    "rank": [1, 1, 2, 1],
})  # predicted ranks 1, 1 (tie -> 1), 1 (tie -> 1), 1: correct, correct, wrong, correct -> 3/4
SOURCE = pd.DataFrame({
    "video1": ["b", "c", "a"],
    "video2": ["e", "e", "c"],
    "rank": [2, 1, 2],
})  # predicted ranks 2, 2, 2: correct, wrong, correct -> 2/3
OTHER = pd.DataFrame({"video1": ["zz"], "video2": ["a"], "rank": [7]})  # ignored sheet
PAIRS = {"nonsource": NONSOURCE, "source": SOURCE, "other": OTHER}


def write_truth_dir(path, truth=TRUTH, pairs=PAIRS) -> None:
    """truth.csv and rank-pair-val.xlsx (header row first, one sheet per pair set)."""
    path.mkdir(parents=True, exist_ok=True)
    lines = ["filename,score"] + [f"{name},{score}" for name, score in truth.items()]
    (path / "truth.csv").write_text("\n".join(lines) + "\n")
    with pd.ExcelWriter(path / "rank-pair-val.xlsx") as writer:
        for sheet, df in pairs.items():
            df.to_excel(writer, sheet_name=sheet, index=False)


def write_prediction(path, pred=PRED) -> None:
    lines = ["filename,score"] + [f"{name},{score}" for name, score in pred.items()]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- challenge score

def test_challenge_score_hand_computed() -> None:
    result = challenge_score(PRED, TRUTH, PAIRS)
    assert result["SROCC"] == pytest.approx(HAND_SROCC, abs=1e-12)
    assert result["PLCC"] == pytest.approx(HAND_PLCC, abs=1e-12)
    assert result["acc_nonsource"] == pytest.approx(3 / 4)
    assert result["acc_source"] == pytest.approx(2 / 3)
    expected = 0.45 * HAND_SROCC + 0.45 * HAND_PLCC + 0.05 * 3 / 4 + 0.05 * 2 / 3
    assert result["score"] == pytest.approx(expected, abs=1e-12)
    assert (result["n_videos"], result["n_pairs_nonsource"], result["n_pairs_source"]) == (5, 4, 3)


def test_winner_check_from_spec() -> None:
    """Top NTIRE 2024 KVQ entry: 0.9361 / 0.9359 / 0.7792 / 0.8284 -> reported 0.9228."""
    assert round(weighted_challenge_score(0.9361, 0.9359, 0.7792, 0.8284), 4) == 0.9228


def test_challenge_score_uses_truth_order_and_ignores_extra_predictions() -> None:
    pred = {"extra.mp4": 9.0, **dict(reversed(list(PRED.items())))}
    result = challenge_score(pred, TRUTH, PAIRS)
    assert result["score"] == pytest.approx(challenge_score(PRED, TRUTH, PAIRS)["score"], abs=1e-12)
    assert result["n_ignored_predictions"] == 1


def test_pair_columns_by_position_or_name() -> None:
    unnamed = {s: df.set_axis(["x", "y", "z"], axis=1) for s, df in PAIRS.items() if s != "other"}
    reordered = {s: df[["rank", "video2", "video1"]] for s, df in PAIRS.items() if s != "other"}
    expected = challenge_score(PRED, TRUTH, PAIRS)
    for pairs in (unnamed, reordered):
        result = challenge_score(PRED, TRUTH, pairs)
        assert result["acc_nonsource"] == expected["acc_nonsource"]
        assert result["acc_source"] == expected["acc_source"]


def reference_oracle(pred: dict, truth: dict, pairs: dict) -> float:
    """The reference scorer's steps, written out independently with pandas (positional columns)."""
    gt = pd.Series(truth)
    p = pd.Series(pred)[gt.index]
    srocc = p.rank().corr(gt.rank())
    plcc = p.corr(gt)
    acc = {}
    for sheet in ("nonsource", "source"):
        df = pairs[sheet]
        s1 = df.iloc[:, 0].map(pred).to_numpy()
        s2 = df.iloc[:, 1].map(pred).to_numpy()
        acc[sheet] = float(np.mean(np.where(s1 >= s2, 1, 2) == df.iloc[:, 2].to_numpy()))
    return 0.45 * srocc + 0.45 * plcc + 0.05 * acc["nonsource"] + 0.05 * acc["source"]


def test_challenge_score_matches_independent_oracle_on_random_data() -> None:
    rng = np.random.default_rng(0)
    names = [f"val/{i:04d}.mp4" for i in range(60)]
    truth = dict(zip(names, rng.uniform(1, 5, len(names)).round(3)))
    pred = {n: round(truth[n] + rng.normal(0, 0.6), 1) for n in names}  # rounding makes ties
    pairs = {}
    for sheet in ("nonsource", "source"):
        i, j = rng.integers(0, len(names), (2, 40))
        pairs[sheet] = pd.DataFrame({"video1": [names[k] for k in i], "video2": [names[k] for k in j],
                                     "rank": rng.integers(1, 3, 40)})
    result = challenge_score(pred, truth, pairs)
    assert result["score"] == pytest.approx(reference_oracle(pred, truth, pairs), abs=1e-12)


def test_constant_predictions_give_nan_score() -> None:
    result = challenge_score(dict.fromkeys(TRUTH, 3.0), TRUTH, PAIRS)
    assert math.isnan(result["SROCC"]) and math.isnan(result["PLCC"]) and math.isnan(result["score"])
    assert result["acc_nonsource"] == pytest.approx(3 / 4)  # every pair is a tie -> rank 1


def test_challenge_score_lists_all_problems_at_once() -> None:
    pred = {"a": 1.0, "b": float("nan"), "c": "high"}  # d, e missing
    pairs = {"nonsource": NONSOURCE.assign(video1=["a", "q", "d", "e"]),
             "other": OTHER}  # sheet "source" missing
    with pytest.raises(ScoringError) as info:
        challenge_score(pred, TRUTH, pairs)
    text = str(info.value)
    assert len(info.value.problems) == 5
    for needle in ("'b'", "'c'", "missing 2 of 5 truth videos: 'd', 'e'", "sheet 'source' is missing",
                   "not in the truth: 'q'"):
        assert needle in text


def test_bad_pair_rows_and_columns() -> None:
    pairs = {"nonsource": NONSOURCE.assign(rank=[1, 3, 2, None]), "source": SOURCE[["video1", "video2"]]}
    with pytest.raises(ScoringError) as info:
        challenge_score(PRED, TRUTH, pairs)
    text = str(info.value)
    assert "sheet 'nonsource' row 3: rank must be 1 or 2" in text
    assert "sheet 'nonsource' row 5: rank must be 1 or 2" in text
    assert "sheet 'source' needs columns video1, video2, rank" in text


def test_long_lists_are_capped() -> None:
    truth = {f"v{i}": float(i) for i in range(50)}
    with pytest.raises(ScoringError) as info:
        challenge_score({"v0": 0.0}, truth, PAIRS)
    assert "missing 49 of 50 truth videos" in str(info.value)
    assert "(+39 more)" in str(info.value)


def test_readers_round_trip(tmp_path) -> None:
    write_truth_dir(tmp_path / "ref")
    write_prediction(tmp_path / "prediction.csv")
    truth, pairs = read_truth_dir(tmp_path / "ref")
    assert list(truth) == list(TRUTH) and truth == TRUTH
    assert set(pairs) == {"nonsource", "source", "other"}
    assert read_prediction_csv(tmp_path / "prediction.csv") == PRED
    assert score_files(tmp_path / "prediction.csv", tmp_path / "ref") == challenge_score(PRED, truth, pairs)


def test_truth_dir_missing_files(tmp_path) -> None:
    with pytest.raises(ScoringError) as info:
        read_truth_dir(tmp_path)
    assert "truth.csv: file not found" in str(info.value)
    assert "rank-pair-val.xlsx: file not found" in str(info.value)
