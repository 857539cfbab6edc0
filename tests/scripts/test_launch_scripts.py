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


@pytest.mark.parametrize("pretrained", ["0", "1"])
def test_demo_script_modes(pretrained: str, fake_python: Path, tmp_path: Path) -> None:
    """PRETRAINED=0: the EfficientNet-Lite0 config, no SlowFast features; PRETRAINED=1: the
    pretrained ResNet-50 + Kinetics SlowFast config, under demo_out/pretrained."""
    env = {**os.environ, "PY": str(fake_python), "PRETRAINED": pretrained}
    subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=tmp_path, env=env, check=True,
                   capture_output=True, text=True, timeout=60)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    slowfast = [c for c in calls if "SlowFast_features.py" in c]
    train = next(c for c in calls if " train.py" in c)
    scoring = [c for c in calls if " test.py" in c]
    assert len(scoring) == 2 and any("metric_score.py" in c for c in calls)
    if pretrained == "1":
        assert len(slowfast) == 1 and "--no_pretrained" not in slowfast[0]
        assert "demo_out/pretrained/feature" in slowfast[0]
        for call in [train, *scoring]:
            assert "-o config/demo_simpleVQA_pretrained.yml" in call
        assert "-r demo_out/pretrained/checkpoint" in train
    else:
        assert slowfast == []
        for call in [train, *scoring]:
            assert "-o config/demo_simpleVQA.yml" in call and "--set" not in call
        assert "-r demo_out/checkpoint" in train


@pytest.mark.parametrize("config", ["config/demo_simpleVQA.yml", "config/demo_simpleVQA_pretrained.yml"])
def test_demo_configs_follow_their_weight_records(config: str) -> None:
    """Each demo config passes the load-time checks, and its views are normalised as its spatial
    branch's weight record says (kvq.engine.preflight.normalization_problems)."""
    import datasets  # noqa: F401  (registers the datasets)
    from kvq.config import load_config
    from kvq.engine.preflight import normalization_problems

    assert normalization_problems(load_config(ROOT / config)) == []


def test_demo_pretrained_without_weights_stops_naming_the_file(isolated_weight_dirs: Path) -> None:
    env = {**os.environ, "PY": str(ROOT / ".venv" / "bin" / "python"), "PRETRAINED": "1",
           "KVQ_WEIGHTS_DIR": str(isolated_weight_dirs), "PYTHONPATH": str(ROOT)}
    if not Path(env["PY"]).exists():
        pytest.skip(f"no virtual environment at {env['PY']} (make venv)")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "PRETRAINED=1" in r.stderr and "resnet50-0676ba61.pth" in r.stderr
    assert "demo dataset" not in r.stdout  # stopped before any work


def test_demo_script_rejects_unknown_mode(fake_python: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PY": str(fake_python), "PRETRAINED": "yes"}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "PRETRAINED must be 0 or 1" in r.stderr
