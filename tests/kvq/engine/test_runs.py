"""Runs never clobber runs: distinct shipped names, refused output folders, -r given a file."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import train
from kvq.config import ConfigError, load_config
from kvq.engine.runs import check_output_dir
from tests.media import make_tiny_dataset, simplevqa_config

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_training_configs_have_distinct_names() -> None:
    names: dict[str, str] = {}
    for path in sorted((ROOT / "config").glob("*.yml")):
        cfg = load_config(path)
        if "train" in cfg["data"]:
            assert cfg["name"] not in names, f"{path.name} and {names[cfg['name']]} share name {cfg['name']}"
            names[cfg["name"]] = path.name
    assert {"KSVQE", "KSVQE_nopretrain", "SimpleVQA"} <= set(names)


def test_test_configs_point_at_their_training_configs_checkpoints() -> None:
    for test_cfg, train_cfg in [("Kwai_KSVQE_test.yml", "Kwai_KSVQE.yml"),
                                ("kwai_simpleVQA_test.yml", "kwai_simpleVQA.yml")]:
        name = load_config(ROOT / "config" / train_cfg)["name"]
        assert Path(load_config(ROOT / "config" / test_cfg)["test_load_path"]).name.startswith(f"{name}_head_")


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    path = root / "c.yml"
    path.write_text(yaml.safe_dump(simplevqa_config(make_tiny_dataset(root / "data", n=3), epochs=1)))
    return path


def train_args(cfg: Path, out: Path, *extra: str) -> list[str]:
    return ["-o", str(cfg), "-r", str(out), "--log_dir", str(out / "log"), "--gpu_id", "cpu", "--no_progress",
            *extra]


@pytest.mark.parametrize("existing", ["tiny_val-ltest_last.pth", "tiny_head_val-ltest_s_finetuned.pth"])
def test_a_folder_holding_this_runs_checkpoints_is_refused(cfg_path: Path, tmp_path: Path, existing: str,
                                                           monkeypatch) -> None:
    (tmp_path / existing).write_bytes(b"an earlier run")
    monkeypatch.setattr("kvq.engine.trainer.build_dataset", lambda spec: pytest.fail("work started"))
    with pytest.raises(ConfigError, match=f"already holds checkpoints of a run of this name \\({existing}\\)"
                                          ".*--resume_from.*--overwrite"):
        train.main(train_args(cfg_path, tmp_path))
    assert (tmp_path / existing).read_bytes() == b"an earlier run"


def test_overwrite_and_other_names_are_allowed(cfg_path: Path, tmp_path: Path) -> None:
    (tmp_path / "other_val-ltest_last.pth").write_bytes(b"another config's run")
    assert train.main(train_args(cfg_path, tmp_path, "--stop_after", "0")) == 0  # other names: untouched
    (tmp_path / "tiny_val-ltest_last.pth").write_bytes(b"an earlier run")
    assert train.main(train_args(cfg_path, tmp_path, "--stop_after", "0", "--overwrite")) == 0
    assert (tmp_path / "other_val-ltest_last.pth").read_bytes() == b"another config's run"


@pytest.mark.parametrize("given", ["checkpoint/KSVQE_val-ltest_last.pth", "weights.PT", "a_file"])
def test_a_file_given_to_r_is_a_usage_error(given: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        train.parse_args(["-o", "c.yml", "-r", given])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "-r is the output folder" in err and f"--resume_from {given}" in err
    assert not (tmp_path / "checkpoint").exists()


DDP_SCRIPT = '''
import sys
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from kvq.config import ConfigError
from kvq.core.distributed import DistInfo
from kvq.engine.runs import check_output_dir


def rank_main(rank: int, root: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=2)
    out = Path(root) / f"rank{rank}"  # two machines: only rank 0's folder holds the earlier run
    try:
        check_output_dir(out, [out / "x_last.pth"], None, False, DistInfo(rank, 2))
        verdict = "ok"
    except ConfigError:
        verdict = "refused"
    (Path(root) / f"verdict{rank}").write_text(verdict)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_main, args=(sys.argv[1],), nprocs=2)
'''


def test_under_ddp_rank_0_decides_for_every_rank(tmp_path: Path) -> None:
    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank0" / "x_last.pth").write_bytes(b"")
    (tmp_path / "rank1").mkdir()
    script = tmp_path / "ddp_check.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, check=True, timeout=120)
    assert [(tmp_path / f"verdict{r}").read_text() for r in (0, 1)] == ["refused", "refused"]


def test_resume_from_continues_in_a_folder_holding_the_run(tmp_path: Path) -> None:
    (tmp_path / "x_last.pth").write_bytes(b"")
    check_output_dir(tmp_path, [tmp_path / "x_last.pth"], tmp_path / "x_last.pth", False)
    with pytest.raises(ConfigError):
        check_output_dir(tmp_path, [tmp_path / "x_last.pth"], None, False)
