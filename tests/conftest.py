"""Shared fixtures: the conformance folder (skip with the reason when absent)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = Path(os.environ.get("KVQ_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance"))


def _project_on_pythonpath() -> None:
    """Scripts started as subprocesses (`python scripts/X.py`) import kvq, models and datasets from
    the editable install (`pip install -e . --no-deps`, done by `make test`). In an environment
    without it (requirements installed by hand), put the repository on their PYTHONPATH instead,
    as pytest.ini's `pythonpath = .` does for this process (also when the installed packages are
    another checkout's)."""
    code = ("import importlib.util as u; "
            "print('\\n'.join(str(getattr(u.find_spec(n), 'origin', None)) for n in ('kvq', 'models', 'datasets')))")
    probe = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True)
    found = probe.stdout.split()
    if len(found) != 3 or not all(Path(f).parent.parent == ROOT for f in found):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


_project_on_pythonpath()


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not (CONFORMANCE / "detweights.py").is_file():
        pytest.skip(f"conformance fixtures not found at {CONFORMANCE} (set KVQ_CONFORMANCE_DIR)")
    return CONFORMANCE


@pytest.fixture(scope="session")
def detweights(conformance_dir: Path):
    """The conformance folder's detweights module (fill_state_dict, det_input)."""
    spec = importlib.util.spec_from_file_location("detweights", conformance_dir / "detweights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def isolated_weight_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every weight search folder at an empty temporary folder (returned: $KVQ_WEIGHTS_DIR)."""
    import torch

    monkeypatch.setenv("KVQ_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(config, best 'n' checkpoint) of a 1-epoch train.py run on make_tiny_dataset (SimpleVQA,
    no EMA, CPU); the checkpoint holds the config and a calibration."""
    import yaml

    import train
    from tests.media import make_tiny_dataset, simplevqa_config

    root = tmp_path_factory.mktemp("trained")
    data = make_tiny_dataset(root / "data")
    cfg = root / "c.yml"
    cfg.write_text(yaml.safe_dump(simplevqa_config(data, epochs=1, ema=False)))
    assert train.main(["-o", str(cfg), "-r", str(root / "out"), "--log_dir", str(root / "log"),
                       "--gpu_id", "cpu", "--no_progress"]) == 0
    return cfg, root / "out" / "tiny_head_val-ltest_n_finetuned.pth"
