"""scripts/*.sh run from any folder and start the right entry point with the right config; the
set-up they rely on (Makefile, requirements files, pyproject.toml) holds together."""
import os
import re
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


# packages of requirements-dev.txt (import name) that runtime code must not import
DEV_ONLY = {"pytest": "pytest", "pytorchvideo": "pytorchvideo", "scikit-image": "skimage",
            "imageio-ffmpeg": "imageio_ffmpeg"}
# runtime code: what requirements.txt alone must run (the demo, tests, benchmarks and gpu_check need the dev file)
RUNTIME = ["kvq", "models", "datasets", "train.py", "train_ddp.py", "test.py", "SlowFast_features.py",
           "metric_score.py", "scripts/run_splits.py", "scripts/convert_annotations.py", "scripts/check_reference.py"]


def pins(name: str) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return dict(line.split("==") for line in lines if line and not line.startswith("-r"))


def test_requirements_are_pinned_and_split() -> None:
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert (ROOT / "requirements-dev.txt").read_text().splitlines()[0] == "-r requirements.txt"
    assert set(dev) == set(DEV_ONLY) and not set(runtime) & set(dev)
    assert all(v and "*" not in v for v in [*runtime.values(), *dev.values()])


def test_runtime_code_imports_no_dev_only_package() -> None:
    files = [f for r in RUNTIME for f in ((ROOT / r).rglob("*.py") if (ROOT / r).is_dir() else [ROOT / r])]
    files = [f for f in files if "demo" not in f.relative_to(ROOT).parts]  # kvq/demo: the demo's own code
    pattern = re.compile(r"^\s*(?:import|from)\s+(%s)\b" % "|".join(DEV_ONLY.values()), re.M)
    found = [f"{f.relative_to(ROOT)}: {m}" for f in files for m in pattern.findall(f.read_text())]
    assert found == []


def test_make_installs_both_requirement_files_and_the_project() -> None:
    """make test / make demo (the README's two commands) set the venv up through one rule that
    installs requirements-dev.txt and the project (editable, no dependencies: pyproject.toml has none)."""
    text = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", text, re.M)
    assert rule and {"requirements.txt", "requirements-dev.txt", "pyproject.toml"} <= set(rule.group(1).split())
    assert "-r requirements-dev.txt" in rule.group(2) and "--no-deps -e ." in rule.group(2)
    for target in ("test", "demo"):
        assert re.search(rf"^{target}: \$\(STAMP\)", text, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "dependencies" not in pyproject
    assert all(f'"{p}"' in pyproject for p in ("kvq", "models", "datasets"))
