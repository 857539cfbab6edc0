"""The bad-input matrix: what each kind of bad input gets from each entry point (docs/commands.md
"Bad input"). Each row runs the real command in a fresh process and checks the exit status, the
words the message must hold, that no traceback reaches the user, and that nothing on disk changed
(the user's files, and no half-written output: no checkpoint from a run that refused to start)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.media import make_tiny_dataset, make_video, native_size_config, simplevqa_config

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class World:
    """Tiny labelled videos, a config over them, an output folder (absent until a run makes it) and
    a checkpoint trained on such videos (`trained` of conftest.py: its config and best checkpoint)."""

    data: Path
    config: Path
    out: Path
    trained_config: Path
    checkpoint: Path


@dataclass(frozen=True)
class Case:
    id: str
    command: Callable[[World], list[str]]  # argv after the interpreter
    exit: int
    words: tuple[str, ...]
    prepare: Callable[[World], None] = lambda world: None
    no_output: bool = True  # the output folder stays absent (refused before any work)
    extra: dict = field(default_factory=dict)


def train(world: World, *extra: str) -> list[str]:
    return ["train.py", "-o", str(world.config), "-r", str(world.out), "--log_dir", str(world.out.parent / "log"),
            "--gpu_id", "cpu", "--no_progress", *extra]


def latin1_annotation(world: World) -> None:
    text = "filename,score\nv0.mp4,1\nv1.mp4,2\nv2.mp4,3 # caf\u00e9\n"
    (world.data / "latin1.csv").write_bytes(text.encode("latin-1"))


def leaking_val(world: World) -> None:
    (world.data / "leak.csv").write_text("filename,score\nw0.mp4,1\n./v0.mp4,2\nw1.mp4,3\n")


def mixed_orientations(world: World) -> None:
    """The demo's native-size view (resize null) over portrait v0, v1 (64x96) and two landscape
    clips (96x64) in one batch of 4, cache_features false."""
    for i, source in enumerate(("smptebars", "rgbtestsrc")):
        make_video(world.data / f"land{i}.mp4", size="96x64", frames=8, source=source)
    (world.data / "mixed.csv").write_text("filename,score\nv0.mp4,1\nland0.mp4,2\nv1.mp4,3\nland1.mp4,4\n")
    cfg = native_size_config(world.data, ema=False, batch_size=4, cache_features=False,
                             calibration={"enabled": False})
    cfg["data"]["train"]["args"]["anno_file"] = str(world.data / "mixed.csv")
    world.config.write_text(yaml.safe_dump(cfg))


CASES = [
    Case("annotation in Latin-1", lambda w: train(w, "--set", f"data.train.args.anno_file={w.data / 'latin1.csv'}"),
         2, ("latin1.csv", "line 4", "UTF-8"), latin1_annotation),
    Case("annotation file is a folder", lambda w: train(w, "--set", f"data.val.args.anno_file={w.data}"),
         2, ("is a folder",)),
    Case("negative learning rate", lambda w: train(w, "--set", "optimizer.lr=-1"), 2, ("optimizer.lr", "> 0")),
    Case("batch size 0", lambda w: train(w, "--set", "batch_size=0"), 2, ("batch_size", ">= 1")),
    Case("no epochs", lambda w: train(w, "--set", "num_epochs=0"), 2, ("num_epochs", ">= 1")),
    Case("negative head width", lambda w: train(w, "--set", "model.args.simpleVQA.head.hidden_channels=-5"),
         2, ("hidden_channels", "-5")),
    Case("a train video in val under another spelling",
         lambda w: train(w, "--set", f"data.val.args.anno_file={w.data / 'leak.csv'}"),
         2, ("same video", "'./v0.mp4'", "leak.csv line 3", "train.csv line 2"), leaking_val),
    Case("config file missing", lambda w: train(w, "-o", str(w.data / "nothing.yml")), 2, ("nothing.yml",)),
    # --- rows: training (engine) ---

    # --- rows: scoring, outputs and text files ---

    # --- rows: orientation ---
    Case("portrait and landscape clips at native size in one batch", train, 0, ("epoch 0:",), mixed_orientations,
         no_output=False),

]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("bad_input"), n=3, frames=8)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, data: Path, trained: tuple[Path, Path], tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump(simplevqa_config(data, epochs=1, ema=False)))
    world = World(data, config, tmp_path / "out", *trained)
    case.prepare(world)
    before = tree_digest(data), config.read_bytes()
    argv = case.command(world)
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    message = proc.stdout + proc.stderr
    assert proc.returncode == case.exit, message
    assert "Traceback" not in message, message
    for word in case.words:
        assert word in message, (word, message)
    assert (tree_digest(data), config.read_bytes()) == before  # the user's files are untouched
    if case.no_output:
        assert not world.out.exists() or not any(world.out.rglob("*.pth")), list(world.out.rglob("*"))
