"""scripts/*.sh run from any folder and start the right entry point with the right config."""
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A 'python' that records its arguments instead of training."""
    exe = tmp_path / "python"
    exe.write_text(f"#!/usr/bin/env bash\necho \"$PWD $*\" >> {tmp_path / 'calls.txt'}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


@pytest.mark.parametrize("script, expected", [
    ("train.sh", "train.py -o config/kwai_simpleVQA.yml --gpu_id 0"),
    ("train_KSVQE.sh", "train.py -o config/Kwai_KSVQE.yml --gpu_id 0"),
    ("test.sh", "test.py -o config/kwai_simpleVQA_test.yml --gpu_id 0"),
    ("test_KSVQE.sh", "test.py -o config/Kwai_KSVQE_test.yml --gpu_id 0"),
    ("train_KSVQE_ddp.sh", "train_ddp.py -o config/Kwai_KSVQE.yml"),
])
def test_scripts_run_from_elsewhere(script: str, expected: str, fake_python: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PY": str(fake_python), "NPROC": "2"}
    subprocess.run(["bash", str(ROOT / "scripts" / script)], cwd=tmp_path, env=env, check=True,
                   capture_output=True, text=True, timeout=60)
    for _ in range(100):  # the train scripts start in the background
        calls = (tmp_path / "calls.txt").read_text() if (tmp_path / "calls.txt").exists() else ""
        if calls:
            break
        subprocess.run(["sleep", "0.1"])
    assert calls.startswith(str(ROOT)) and expected in calls, calls
