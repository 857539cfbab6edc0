"""scripts/check_reference.py and the kvq.eval.conformance functions behind it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kvq.eval.conformance import Comparison, check_all, compare_case

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_reference.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture
def bogus_fixture_dir(conformance_dir: Path, tmp_path: Path) -> Path:
    """A fixture folder whose model has a backbone that no one registered."""
    shutil.copy(conformance_dir / "detweights.py", tmp_path / "detweights.py")
    (tmp_path / "manifest_bogus.json").write_text(json.dumps({"noSuchModel_backbone.w": [2, 2]}))
    case = {"input": {"x": ["bogus:4", [1, 3, 4, 8, 8], -2, 2]}, "score": [0.0]}
    (tmp_path / "expected_bogus.json").write_text(json.dumps({"manifest": "manifest_bogus.json", "cases": [case]}))
    return tmp_path


def test_script_passes_simplevqa_and_slowfast(conformance_dir: Path) -> None:
    proc = run_script(str(conformance_dir), "--only", "simplevqa", "slowfast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["model"], r["case"]) for r in lines] == [
        ("simplevqa", "simplevqa:8x224"), ("simplevqa", "simplevqa:8x448"), ("slowfast", "slowfast_clip")]
    for r in lines:
        assert r["pass"] is True and 0 <= r["max_abs_error"] < 1e-4, r


def test_script_passes_fastvqa_and_ksvqe_short_cases(conformance_dir: Path) -> None:
    proc = run_script(str(conformance_dir), "--only", "fastvqa", "ksvqe_ts1", "ksvqe_ts2", "--max_frames", "16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    passed = {(r["model"], r["case"]) for r in lines if r["pass"] is True}
    assert passed == {("fastvqa", "fastvqa:16x288"), ("ksvqe_ts1", "ksvqe_fragment:8"), ("ksvqe_ts2", "ksvqe_fragment:8")}
    assert all(r["pass"] is None for r in lines if (r["model"], r["case"]) not in passed)  # T=32: skipped


def test_unregistered_backbone_is_a_failing_line(bogus_fixture_dir: Path) -> None:
    (result,) = check_all(bogus_fixture_dir)
    assert result.passed is False and "noSuchModel" in result.skipped
    proc = run_script(str(bogus_fixture_dir))
    assert proc.returncode == 1, proc.stderr
    (line,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert line["pass"] is False and "unknown backbone 'noSuchModel'" in line["skipped"]


def test_max_frames_skips_without_failing(conformance_dir: Path) -> None:
    (result,) = check_all(conformance_dir, only=["slowfast"], max_frames=16)
    assert result.passed is None and "32 frames" in result.skipped


def test_unknown_fixture_name_is_an_error(conformance_dir: Path) -> None:
    with pytest.raises(ValueError, match="nosuch"):
        check_all(conformance_dir, only=["nosuch"])


def test_missing_manifest_fails(bogus_fixture_dir: Path) -> None:
    (bogus_fixture_dir / "manifest_bogus.json").unlink()
    (result,) = check_all(bogus_fixture_dir)
    assert result.passed is False and "manifest_bogus.json" in result.skipped


def test_comparison_tolerances() -> None:
    summary = {"shape": [1, 3], "sum": 6.0, "abs_sum": 6.0, "first": [1.0, 2.0, 3.0]}
    ok = compare_case({"input": {}, "score": [1.0], "features": summary},
                      {"score": torch.tensor([[1.0 + 1e-4]]), "features": torch.tensor([[1.0, 2.0, 3.0]])})
    assert ok.passed and ok.max_abs_error == pytest.approx(1e-4, rel=1e-3)
    bad = compare_case({"input": {}, "score": [1.0], "features": summary, "contrastive_loss": 2.0},
                       {"score": torch.tensor([[1.0 + 3e-4]]), "features": torch.tensor([[1.0, 2.0]])})
    assert not bad.passed
    assert any(f.startswith("score[0]") for f in bad.failures)
    assert any(f.startswith("features: shape") for f in bad.failures)
    assert any(f.startswith("contrastive_loss") for f in bad.failures)
    drift = Comparison()
    drift.summary("x", {"shape": [2], "sum": 0.0, "abs_sum": 2.0, "first": [1.0]}, torch.tensor([1.0, -0.99]))
    assert any(f.startswith("x.sum") for f in drift.failures)
