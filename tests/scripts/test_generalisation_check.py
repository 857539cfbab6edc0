"""scripts/generalisation_check.py: makes the 18 unseen clips with VMAF labels once, scores them."""
from pathlib import Path

import pytest
import torch

from scripts import generalisation_check
from tests.kvq.api.test_scorer import MODEL_ARGS, fast_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from kvq.config import validate
    from models import VQANetwork

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fast.pth"
    torch.save({"state_dict": VQANetwork(MODEL_ARGS).state_dict(), "config": dict(validate(fast_config())),
                "epoch": 0}, path)
    return path


def test_clips_labels_and_scores(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    contents = dict(list(generalisation_check.CONTENTS.items())[1:])  # 2 of 3 contents: a faster test
    monkeypatch.setattr(generalisation_check, "CONTENTS", contents)
    out = tmp_path / "gen"
    args = ["--checkpoint", str(checkpoint), "--out", str(out), "--size", "64x96", "--frames", "8", "-q"]
    assert generalisation_check.main(args) == 0
    rows = generalisation_check.read_labels(out / generalisation_check.LABELS)
    assert len(rows) == len(contents) * 6
    assert {r["codec"] for r in rows} == set(generalisation_check.CODINGS)
    for content in contents:
        for codec in generalisation_check.CODINGS:
            vmaf = [r["vmaf"] for r in rows if r["content"] == content and r["codec"] == codec]
            assert vmaf == sorted(vmaf, reverse=True), (content, codec, vmaf)  # higher CRF, lower VMAF
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "filename,score,vmaf" and len(predictions) == len(rows) + 1
    assert "all" in capsys.readouterr().out
    # a finished set is reused, not made again
    stamp = (out / rows[0]["filename"]).stat().st_mtime_ns
    assert generalisation_check.main(args) == 0
    assert (out / rows[0]["filename"]).stat().st_mtime_ns == stamp


def test_srocc_table_groups() -> None:
    rows = [{"filename": f"{c}{i}", "vmaf": float(i), "codec": "x265" if i % 2 else "vp9", "content": c}
            for c in "ab" for i in range(4)]
    scores = {r["filename"]: -r["vmaf"] for r in rows}
    table = {name: (n, s) for name, n, s in generalisation_check.srocc_table(rows, scores)}
    assert table["all"] == (8, pytest.approx(-1.0))
    assert table["content a"] == (4, pytest.approx(-1.0)) and table["codec vp9"][0] == 4
