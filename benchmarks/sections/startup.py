"""Section `startup`: every entry point's `-h` and its usage error after the imports its work needs,
against a bare `python -c "import torch"`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from benchmarks.sections.common import ROOT, best_time

# entry point -> arguments that end in a usage error (exit 2) once it has imported what its work needs
STARTUP_ENTRIES: dict[str, tuple[str, ...]] = {
    "train.py": ("-o", "{missing}.yml"),
    "train_ddp.py": ("-o", "{missing}.yml"),
    "test.py": ("-o", "{missing}.yml"),
    "SlowFast_features.py": ("--video_root", "{missing}", "--video_csv", "{missing}.csv"),
    "metric_score.py": ("{missing}.csv", "{missing}"),
    "scripts/make_demo_dataset.py": ("--out", "{missing}", "--sources", "0"),
    "scripts/convert_annotations.py": ("--format", "kvq", "{missing}.csv", "{missing}_out.csv"),
    "scripts/run_splits.py": ("-o", "{missing}.yml"),
    "scripts/check_reference.py": ("{missing}",),
    "benchmarks/run.py": ("--only", "no_such_section"),
}


def command_seconds(cmd: Sequence[str], status: int, repeat: int) -> float:
    """Best wall time of `repeat` runs of `cmd` (run from the repository root), which must exit `status`."""
    def once() -> None:
        proc = subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != status:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}, not {status}:\n"
                               + (proc.stdout + proc.stderr)[-3000:])

    return best_time(once, repeat)[0]


def bench_startup(work: Path, repeat: int) -> dict[str, Any]:
    """`ENTRY -h` and ENTRY up to a usage error after its imports, against `python -c "import torch"`."""
    torch_s = command_seconds([sys.executable, "-c", "import torch"], 0, repeat)
    missing = str(work / "startup" / "does_not_exist")
    rows = []
    for entry, bad_args in STARTUP_ENTRIES.items():
        help_s = command_seconds([sys.executable, entry, "-h"], 0, repeat)
        work_s = command_seconds([sys.executable, entry, *(a.format(missing=missing) for a in bad_args)], 2, repeat)
        rows.append({"entry": entry, "help_s": help_s, "help_ratio": help_s / torch_s, "work_imports_s": work_s,
                     "work_ratio": work_s / torch_s})
    return {"import_torch_s": torch_s, "entries": rows}
