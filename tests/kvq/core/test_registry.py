"""kvq.core.registry: registries filled by importing their modules on the first lookup."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kvq.core.registry import Registry

ROOT = Path(__file__).resolve().parents[3]


def test_modules_are_imported_on_the_first_lookup_only() -> None:
    """A fresh interpreter: importing `models` (what models.slowfast does) imports no backbone module
    (they import torchvision); the first lookup imports them all."""
    code = ("import sys, models; from models.registry import BACKBONES; from datasets.registry import DATASETS\n"
            "print(sorted(m for m in sys.modules if m in ('models.ksvqe', 'models.simplevqa', 'models.swin3d_backbone',"
            " 'datasets.kvq_datasets', 'torchvision')))\n"
            "print(BACKBONES.names(), 'ViewDecompositionDataset_KVQ' in DATASETS)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = proc.stdout.splitlines()
    assert before == "[]"
    assert after == "['KSVQE', 'simpleVQA', 'swin_small', 'swin_tiny', 'swin_tiny_grpb', 'swin_tiny_grpb_m'] True"


def test_a_module_that_fails_to_import_stays_pending() -> None:
    registry = Registry("thing", modules=("kvq.no_such_module",))
    for _ in range(2):  # not marked as imported after the failure
        with pytest.raises(ModuleNotFoundError, match="kvq.no_such_module"):
            registry.get("x")
