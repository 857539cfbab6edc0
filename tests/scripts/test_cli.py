"""CLI conventions of every entry point (kvq/cli.py): fast -h that shows defaults, -v/-q, exit
statuses, third-party warning filters, GPUs that are named but not there."""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import SlowFast_features
import metric_score
from kvq import cli
from kvq.core.device import DeviceError, select_devices
from kvq.core.distributed import process_device
from tests.media import make_video

ROOT = Path(__file__).resolve().parents[2]

# entry point -> a default its -h must show (None: it has no option with a default)
ENTRY_POINTS = {
    "train.py": "(default: val-ltest)",
    "train_ddp.py": "(default: ./checkpoint/)",
    "test.py": "(default: prediction.csv)",
    "SlowFast_features.py": "(default: 224)",
    "metric_score.py": None,
    "scripts/make_demo_dataset.py": "(default: 24)",
    "scripts/convert_annotations.py": "(default: all)",
    "scripts/run_splits.py": "(default: 10)",
    "scripts/check_reference.py": None,
    "scripts/generalisation_check.py": "(default: 360x640)",
    "benchmarks/run.py": "(default: startup,decode,",
}
# entry points whose module imports torch (their -h still works, after the import)
HEAVY_ENTRY_POINTS = ["scripts/gpu_check.py"]
# what may end a script without run_main: (file, why)
NO_RUN_MAIN = {
    "benchmarks/reference_views.py": "runs in the reference's checkout with its python: imports nothing of this project",
}
# every hyphenated spelling that is an alias of an underscore flag:
# (entry point, argv with the alias, parsed attribute, expected value)
HYPHEN_ALIASES = [
    ("scripts/run_splits.py", ["-o", "c.yml", "--val-frac", "0.15"], "val_frac", 0.15),
    ("scripts/run_splits.py", ["-o", "c.yml", "--test-frac", "0.3"], "test_frac", 0.3),
    ("scripts/run_splits.py", ["-o", "c.yml", "--group-by", "none"], "group_by", "none"),
    ("scripts/run_splits.py", ["-o", "c.yml", "--local-rank", "1"], "local_rank", 1),
    ("scripts/check_reference.py", ["fixtures", "--max-frames", "8"], "max_frames", 8),
    ("scripts/convert_annotations.py", ["--format", "kvq", "a.csv", "b.txt", "--output-format", "ksvqe",
                                        "--first-cls", "3"], "first_cls", 3),
    ("scripts/convert_annotations.py", ["--format", "kvq", "a.csv", "b.csv", "--output-format", "ksvqe"],
     "output_format", "ksvqe"),
    ("scripts/convert_annotations.py", ["--format", "kvq", "a.csv", "b.csv", "--group-size", "5"], "group_size", 5),
    ("scripts/make_demo_dataset.py", ["--out", "d", "--workers", "3"], "num_workers", 3),
    ("SlowFast_features.py", ["--video_root", "v", "--video_csv", "a.csv", "--gpu_ids", "cpu"], "gpu_id", "cpu"),
    ("train.py", ["-o", "c.yml", "--gpu_ids", "0,1"], "gpu_id", "0,1"),
    ("train_ddp.py", ["-o", "c.yml", "--local-rank", "2"], "local_rank", 2),
]

# runs ENTRY -h as `python ENTRY -h` would, then reports whether torch was imported
HELP_RUNNER = """
import runpy, sys
entry = sys.argv[1]
sys.argv = [entry, "-h"]
try:
    runpy.run_path(entry, run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED")
sys.exit(code)
"""


@pytest.fixture
def root_logging():
    """Leave the root logger as it was (level and handlers)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
        h.close()
    root.setLevel(level)


def entry_points() -> list[str]:
    """Every command-line entry point: the top-level scripts, scripts/*.py, benchmarks/*.py."""
    top = [p.name for p in ROOT.glob("*.py") if "__main__" in p.read_text()]
    return sorted(top) + [str(p.relative_to(ROOT)) for d in ("scripts", "benchmarks") for p in sorted((ROOT / d).glob("*.py")) if p.name != "__init__.py"]


def load_entry(entry: str):
    """The module of an entry point file (scripts/ and benchmarks/ are not packages)."""
    spec = importlib.util.spec_from_file_location(f"entry_{Path(entry).stem}", ROOT / entry)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_lists_name_every_entry_point() -> None:
    named = set(ENTRY_POINTS) | set(HEAVY_ENTRY_POINTS) | {"benchmarks/reference_views.py"}
    assert named == set(entry_points())


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_help_is_answered_before_torch_is_imported_and_shows_defaults(entry: str, tmp_path: Path) -> None:
    """Run from another folder: the project's packages come from the install (or PYTHONPATH), not the cwd."""
    proc = subprocess.run([sys.executable, "-c", HELP_RUNNER, str(ROOT / entry)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.rstrip().endswith("TORCH_NOT_IMPORTED"), proc.stdout[-500:]
    assert "-v, --verbose" in proc.stdout and "-q, --quiet" in proc.stdout
    assert re.search(r"\n    (python|torchrun) ", proc.stdout), "the docstring's layout is kept"
    if ENTRY_POINTS[entry]:
        assert ENTRY_POINTS[entry] in " ".join(proc.stdout.split())  # help lines are wrapped
    assert "Warning" not in proc.stderr


@pytest.mark.parametrize("entry", HEAVY_ENTRY_POINTS)
def test_help_of_entry_points_that_import_torch(entry: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / entry), "-h"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "-v, --verbose" in proc.stdout


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if e.startswith("scripts/")])
def test_scripts_run_as_files_from_another_folder(entry: str, tmp_path: Path) -> None:
    """`python scripts/X.py` (sys.path[0] = scripts/, no sys.path edits) imports kvq from the install."""
    proc = subprocess.run([sys.executable, str(ROOT / entry), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("entry, argv, attr, expected", HYPHEN_ALIASES,
                         ids=[f"{e}:{attr}" for e, _, attr, _ in HYPHEN_ALIASES])
def test_hyphen_and_reference_spellings_are_aliases(entry: str, argv: list[str], attr: str, expected) -> None:
    module = load_entry(entry)
    assert getattr(module.parse_args(argv), attr) == expected
    underscore = ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv]
    underscore = [{"--workers": "--num_workers", "--gpu_ids": "--gpu_id"}.get(a, a) for a in underscore]
    assert getattr(module.parse_args(underscore), attr) == expected


@pytest.mark.parametrize("entry", [e for e in entry_points() if e != "benchmarks/reference_views.py"])
def test_long_flags_are_spelled_with_underscores(entry: str, monkeypatch) -> None:
    """The first spelling of every long option (the one -h and the docs lead with) has no hyphen after `--`."""
    module = load_entry(entry)
    parsers = []
    monkeypatch.setattr(module, "make_parser", lambda doc: parsers.append(cli.make_parser(doc)) or parsers[-1])
    with pytest.raises(SystemExit) as e:
        getattr(module, "parse_args", getattr(module, "main"))(["-h"])
    assert e.value.code == 0 and len(parsers) == 1
    first = [next(o for o in a.option_strings if o.startswith("--")) for a in parsers[0]._actions
             if any(o.startswith("--") for o in a.option_strings)]
    assert "--verbose" in first and [f for f in first if "-" in f[2:]] == []


@pytest.mark.parametrize("entry", entry_points())
def test_no_sys_path_edits(entry: str) -> None:
    """Scripts import the project's packages from the install (pyproject.toml), never by editing sys.path."""
    text = (ROOT / entry).read_text()
    assert not re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*(\+=|=|\[)", text), entry


@pytest.mark.parametrize("entry", [e for e in entry_points() if e not in NO_RUN_MAIN])
def test_every_entry_point_ends_with_run_main_and_uses_the_shared_parser(entry: str) -> None:
    text = (ROOT / entry).read_text()
    main_block = text.split('if __name__ == "__main__":')[-1]
    assert re.search(r"^\s+run_main\(main(, fast_exit=True)?\)\s*$", main_block, re.M), entry
    assert "sys.exit(" not in main_block
    assert "make_parser(__doc__)" in text and "ArgumentParser(" not in text


def test_help_formatter_shows_only_defaults_worth_showing() -> None:
    p = cli.make_parser("doc\n    indented line")
    p.add_argument("--n", type=int, default=0, help="a number")
    p.add_argument("--name", default=None, help="a name")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--said", default=3, help="already said (default 3)")
    raw = p.format_help()
    assert "\n    indented line" in raw
    text = " ".join(raw.split())
    assert "a number (default: 0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: 3)" not in text


@pytest.mark.parametrize("flags, level", [([], logging.INFO), (["-v"], logging.DEBUG), (["-q"], logging.WARNING),
                                          (["--quiet"], logging.WARNING)])
def test_verbose_and_quiet_set_the_level(flags: list[str], level: int, tmp_path: Path, root_logging) -> None:
    assert metric_score.main([*flags, str(tmp_path / "none.csv"), str(tmp_path)]) == cli.EXIT_USAGE
    assert root_logging.level == level
    assert len([h for h in root_logging.handlers if getattr(h, "kvq_cli", False)]) == 1


def test_verbose_and_quiet_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as e:
        metric_score.main(["-v", "-q", "a.csv", "b"])
    assert e.value.code == cli.EXIT_USAGE


def test_log_file_gets_the_messages_and_a_new_setup_replaces_it(tmp_path: Path, root_logging) -> None:
    cli.setup_logging(logging.INFO)
    path = cli.log_to_file(tmp_path, "run")
    logging.getLogger("x").info("hello")
    assert cli.log_to_file(tmp_path, "run", rank=1) is None
    cli.setup_logging(logging.INFO)  # the earlier file handler is closed and removed
    logging.getLogger("x").info("not in the file")
    assert path.read_text().count("\n") == 1 and "INFO x: hello" in path.read_text()


def test_non_zero_ranks_log_warnings_only(root_logging) -> None:
    cli.setup_logging(logging.DEBUG, rank=1)
    assert root_logging.level == logging.WARNING


def test_known_third_party_warning_is_filtered_and_others_are_not() -> None:
    category, _, module = cli.THIRD_PARTY_WARNINGS[0]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cli.filter_third_party_warnings()
        for message, mod in (("`torch.jit.script` is deprecated. Please switch to `torch.compile`", "torch.jit._script"),
                             ("something else is deprecated", "torch.jit._script"),
                             ("`torch.jit.script` is deprecated.", "my_module")):
            warnings.warn_explicit(message, category, "file.py", 1, module=mod)
    assert [str(w.message) for w in seen] == ["something else is deprecated", "`torch.jit.script` is deprecated."]


def test_filter_matches_the_warning_fvcore_really_prints() -> None:
    """A fresh interpreter importing fvcore.nn (what pytorchvideo imports) prints the FutureWarning,
    and prints nothing once the filters are on."""
    code = "import sys; from kvq.cli import filter_third_party_warnings; {} import fvcore.nn"
    plain, filtered = (subprocess.run([sys.executable, "-c", code.format(f)], cwd=ROOT, capture_output=True,
                                      text=True, timeout=300) for f in ("", "filter_third_party_warnings();"))
    assert "FutureWarning" in plain.stderr
    assert filtered.returncode == 0 and "Warning" not in filtered.stderr, filtered.stderr


def raising(error: Exception):
    def main(_argv) -> int:
        raise error

    return main


def test_run_main_exit_statuses(caplog) -> None:
    for error in (DeviceError("--gpu_id 7: no"), FileNotFoundError("x.csv")):
        with pytest.raises(SystemExit) as e:
            cli.run_main(raising(error))
        assert e.value.code == cli.EXIT_USAGE
    assert "--gpu_id 7: no" in caplog.text
    with pytest.raises(SystemExit) as e:
        cli.run_main(lambda _: cli.EXIT_PARTIAL)
    assert e.value.code == cli.EXIT_PARTIAL
    with pytest.raises(ZeroDivisionError):  # a bug: traceback, exit 1
        cli.run_main(raising(ZeroDivisionError()))


def test_run_main_fast_exit_flushes_output_and_keeps_the_status(tmp_path) -> None:
    """fast_exit ends with os._exit: what is still buffered (stdout to a pipe, a log file) must be written first."""
    log_file = tmp_path / "run.log"
    code = ("import logging, sys; from kvq import cli\n"
            f"logging.basicConfig(filename={str(log_file)!r}, level=logging.INFO)\n"
            "def main(_argv):\n"
            "    print('scored 3 videos')\n"
            "    logging.getLogger('kvq').info('csv written')\n"
            "    return cli.EXIT_PARTIAL\n"
            "cli.run_main(main, fast_exit=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout to a pipe: block-buffered
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == cli.EXIT_PARTIAL, done.stderr
    assert done.stdout == "scored 3 videos\n"
    assert "csv written" in log_file.read_text()


def gpus(monkeypatch, count: int) -> list:
    """Pretend the machine has `count` GPUs; returns the devices made current (set_device)."""
    current: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


@pytest.mark.parametrize("count", [0, 2])
def test_named_gpu_that_is_not_there_is_an_error(monkeypatch, count: int) -> None:
    gpus(monkeypatch, count)
    with pytest.raises(DeviceError, match=f"{count} visible GPU"):
        select_devices("7")
    with pytest.raises(DeviceError, match="--gpu_ids 0,7"):
        select_devices("0,7", "--gpu_ids")
    with pytest.raises(DeviceError, match="comma-separated"):
        select_devices("first")
    assert select_devices("cpu") == (torch.device("cpu"), [])
    assert select_devices(None) == ((torch.device("cuda:0"), [0]) if count else (torch.device("cpu"), []))


def test_named_gpus_that_are_there_are_used(monkeypatch) -> None:
    current = gpus(monkeypatch, 2)
    assert select_devices("1,0") == (torch.device("cuda:1"), [1, 0])
    assert current == [torch.device("cuda:1")]


def test_ddp_process_device_honours_gpu_id(monkeypatch) -> None:
    gpus(monkeypatch, 4)
    assert process_device("2,3", 1, 2) == torch.device("cuda", 3)
    assert process_device(None, 5, 8) == torch.device("cuda", 1)
    assert process_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(DeviceError, match="2 GPU.*for 4 process"):
        process_device("2,3", 0, 4)
    with pytest.raises(DeviceError, match="4 visible GPU"):
        process_device("3,4", 0, 2)
    gpus(monkeypatch, 0)
    assert process_device(None, 1, 2) == torch.device("cpu")
    with pytest.raises(DeviceError, match="0 visible GPU"):
        process_device("0", 0, 1)


def test_slowfast_features_with_a_missing_gpu_exits_2(monkeypatch, tmp_path: Path, caplog, root_logging) -> None:
    gpus(monkeypatch, 0)
    make_video(tmp_path / "a.mp4", size="32x32", frames=4)
    (tmp_path / "list.csv").write_text("filename,score\na.mp4,1\n")
    argv = ["--video_root", str(tmp_path), "--video_csv", str(tmp_path / "list.csv"), "--gpu_id", "7",
            "--feature_save_folder", str(tmp_path / "out"), "--no_pretrained"]
    with pytest.raises(SystemExit) as e:
        cli.run_main(lambda _: SlowFast_features.main(argv))
    assert e.value.code == cli.EXIT_USAGE
    assert "--gpu_id 7" in caplog.text and "0 visible GPU" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("note", [None, "kept: checkpoint/x_last.pth (resume with --resume_from)"])
def test_ctrl_c_exits_130_with_one_line_saying_what_was_kept(note, tmp_path: Path) -> None:
    """Ctrl-C (KeyboardInterrupt, SIGINT) anywhere in a command: no traceback, exit 130, one line."""
    code = ("import logging, os, signal; from kvq import cli\n"
            "def main(argv):\n"
            "    cli.setup_logging()\n"
            + (f"    cli.on_interrupt(lambda: {note!r})\n" if note else "")
            + "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    return 0\n"
            "cli.run_main(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED == 130
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted (Ctrl-C)" in lines[0]
    assert (note or "nothing was written") in lines[0]
