"""The KVQ user's road, rehearsed: the README's KVQ commands run as the README writes them.

The commands are read from README.md: the fenced bash blocks between `<!-- rehearsal:NAME -->`
and `<!-- /rehearsal -->`. They run in a temporary folder that looks like a checkout (the
repository's entry points, packages and config/ linked in) holding `data/KVQ` in the official
release layout, made tiny by `scripts/make_demo_dataset.py --layout kvq` (4 sources = 28 videos
of 0.5 s at 64x112). The only changes to the commands, all appended flags (the README text
stays as users read it):
- `python` is this test's interpreter;
- SlowFast_features.py: `--no_pretrained` (no Kinetics weights offline), `--num_workers 0 --no_progress`;
- train.py / test.py: `--no_progress` and `--set` overrides: `pretrained=false` for every backbone
  of the config (no ImageNet/Kinetics/CLIP/CONTRIQUE weights offline), `num_workers=0`, tiny views
  (`SHRINK_VIEWS`), train.py `num_epochs=1`; KSVQE's train.py also `ema=false`,
  `calibration.enabled=false`, no gradient checkpointing and 1 validation clip (its forward passes
  dominate the cost; test.py still scores 3 clips per video).
Nothing else is added: a README command that does not work as written fails here.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("train.py", "train_ddp.py", "test.py", "SlowFast_features.py", "metric_score.py", "kvq", "datasets",
          "models", "scripts", "config")
BLOCK = re.compile(r"<!-- rehearsal:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /rehearsal -->", re.S)
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
SHRINK_VIEWS = {"simpleVQA": {"resize": 72, "crop": 64},
                "technical": {"fragments_h": 7, "fragments_w": 7, "clip_len": 4, "aligned": 4, "frame_interval": 2}}
SHRINK_TRAIN = ["num_epochs=1"]
SHRINK_MODEL = {"KSVQE": ["ema=false", "calibration.enabled=false", "model.args.KSVQE.backbone.checkpoint=false",
                          "data.val.args.sample_types.technical.num_clips=1"]}  # train.py only


def readme_commands(name: str) -> list[list[str]]:
    """The commands of README block `name`: backslash-continued lines joined, comments dropped."""
    blocks = {m["name"]: m["body"] for m in BLOCK.finditer((ROOT / "README.md").read_text())}
    assert name in blocks, f"README.md has no <!-- rehearsal:{name} --> block (found: {sorted(blocks)})"
    text = "\n".join(FENCE.findall(blocks[name])).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in text.splitlines()]
    commands = [c for c in commands if c]
    for c in commands:
        assert not {"|", "&&", ">", "&", ";"} & set(c), f"rehearsed commands are plain commands: {c}"
    return commands


def rehearsal_flags(argv: list[str], cwd: Path) -> list[str]:
    """The flags appended to one README command (see the module docstring)."""
    script = Path(argv[1]).name if argv[0] == "python" and len(argv) > 1 else ""
    if script == "SlowFast_features.py":
        return ["--no_pretrained", "--num_workers", "0", "--no_progress"]
    if script not in ("train.py", "test.py"):
        return []
    cfg = yaml.safe_load((cwd / argv[argv.index("-o") + 1]).read_text())
    sets = ["num_workers=0"] + (SHRINK_TRAIN if script == "train.py" else [])
    for key in cfg["model"]["args"]:
        sets += [f"model.args.{key}.backbone.pretrained=false"] + (SHRINK_MODEL.get(key, []) if script == "train.py"
                                                                    else [])
    for split, spec in cfg["data"].items():
        for view in spec["args"]["sample_types"]:
            sets += [f"data.{split}.args.sample_types.{view}.{k}={v}" for k, v in SHRINK_VIEWS[view].items()]
    return ["--no_progress"] + [a for s in sets for a in ("--set", s)]


def rehearse(name: str, cwd: Path) -> list[subprocess.CompletedProcess]:
    done = []
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(cwd)}
    for argv in readme_commands(name):
        run = [sys.executable if a == "python" and i == 0 else a for i, a in enumerate(argv)]
        run += rehearsal_flags(argv, cwd)
        proc = subprocess.run(run, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (f"README command failed ({proc.returncode}): {shlex.join(argv)}\n"
                                      f"appended: {shlex.join(run[len(argv):])}\n{proc.stderr[-4000:]}")
        done.append(proc)
    return done


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """data/KVQ in the KVQ release layout, made by the generator's documented command."""
    data = tmp_path_factory.mktemp("release") / "KVQ"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_dataset.py"), "--out", str(data),
                    "--layout", "kvq", "--sources", "4", "--duration", "0.5", "--size", "64x112"],
                   check=True, capture_output=True, timeout=600)
    return data


@pytest.fixture
def checkout(release: Path, tmp_path: Path) -> Path:
    """A folder that looks like a checkout of the repository, with data/KVQ in it."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copytree(release, tmp_path / "data" / "KVQ")
    return tmp_path


def names(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [row[0] for row in list(csv.reader(f))[1:]]


def test_readme_blocks_cover_the_road() -> None:
    """SimpleVQA: features for every split the configs read, train, test, metric_score; KSVQE:
    its lists made, train, 3-clip test."""
    simple = readme_commands("kvq-simplevqa")
    features = [c for c in simple if c[1] == "SlowFast_features.py"]
    csvs = {a for c in features for a in c if a.endswith(".csv")}
    assert {"data/KVQ/train_data.csv", "data/KVQ/val_data.csv", "data/KVQ/test_data.csv"} <= csvs
    assert [c[1] for c in simple if c[0] == "python"][-1] == "metric_score.py"
    ksvqe = readme_commands("kvq-ksvqe")
    made = {c[-1] for c in ksvqe if c[1] == "scripts/convert_annotations.py"}
    cfg = yaml.safe_load((ROOT / "config" / "Kwai_KSVQE_nopretrain.yml").read_text())
    assert {cfg["data"][s]["args"]["anno_file"] for s in ("train", "val")} <= made
    test_cfg = yaml.safe_load((ROOT / "config" / "Kwai_KSVQE_test.yml").read_text())
    assert test_cfg["data"]["test"]["args"]["sample_types"]["technical"]["num_clips"] == 3


def test_kvq_simplevqa_road(checkout: Path) -> None:
    procs = rehearse("kvq-simplevqa", checkout)
    for split in ("train", "val", "test"):  # features of every split
        assert all((checkout / "feature/simpleVQA/kvq" / n / ".complete").is_file()
                   for n in names(checkout / f"data/KVQ/{split}_data.csv"))
    assert names(checkout / "prediction.csv") == names(checkout / "data/KVQ/test_data.csv")
    assert names(checkout / "val_prediction.csv") == names(checkout / "data/KVQ/val_data.csv")
    result = json.loads(procs[-1].stdout.strip().splitlines()[-1])
    assert set(result) == {"score", "SROCC", "PLCC", "acc_nonsource", "acc_source"}


def test_kvq_ksvqe_road(checkout: Path) -> None:
    rehearse("kvq-ksvqe", checkout)
    with open(checkout / "data/KVQ/train_ksvqe.txt", newline="") as f:
        rows = list(csv.reader(f))
    assert [int(r[2]) for r in rows] == list(range(7)) * (len(rows) // 7)  # dis_label: position in the group
    assert names(checkout / "prediction_ksvqe.csv") == names(checkout / "data/KVQ/test_data.csv")
