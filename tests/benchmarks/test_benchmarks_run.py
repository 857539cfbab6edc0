"""benchmarks/run.py --quick completes and writes its JSON summary (numbers are not checked:
speed targets are read from a full run, see README: Benchmarks)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--work", str(tmp_path / "work"),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert {"machine", "videos", "startup", "decode", "views", "slowfast", "forward", "train",
            "reference", "targets"} <= set(summary)
    # no --reference checkout given: the side-by-side section is skipped, saying why
    assert "no --reference DIR given" in summary["reference"]["skipped"]
    assert "== reference: skipped: no --reference DIR given" in proc.stdout
    assert "== startup" in proc.stdout
    assert "== training" in proc.stdout


def test_reference_section_names_what_is_missing(tmp_path: Path) -> None:
    """--reference pointing at a folder that is not the reference's checkout: skipped with the reason."""
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "reference",
                           "--reference", str(tmp_path), "--work", str(tmp_path / "work"), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "not a checkout of the reference" in json.loads(out.read_text())["reference"]["skipped"]
