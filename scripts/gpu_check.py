"""GPU check: the engine on one or more CUDA GPUs, on tiny generated data, in about 5 minutes.

    bash scripts/gpu_check.sh [--work DIR]        # or: python scripts/gpu_check.py

Checks (random weights, tiny videos of tests/media.py):
  train    2 epochs of SimpleVQA, KSVQE and FAST-VQA (swin_tiny_grpb) with amp off / bf16 / fp16:
           finite losses; steps/s of the 2nd epoch and peak GPU memory printed
  ddp      train_ddp.py under torchrun with NCCL, world size 1 and (with 2+ GPUs) 2
  test     test.py with a trained SimpleVQA checkpoint on 3 videos on the GPU and on the CPU: scores
           within GPU_CPU_TOLERANCE with tf32 off (the difference with tf32 on is printed)

Exit status: 0 every check passed on a GPU; 1 a check failed (each failure is printed);
4 no CUDA GPU: the GPU checks were skipped (a short CPU run of the same code paths passed).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

import torch
import yaml

from kvq.cli import log_level, make_parser, run_main, setup_logging
from kvq.config import load_config
from kvq.core.distributed import free_port
from kvq.engine.trainer import Trainer, TrainOptions

ROOT = Path(__file__).resolve().parents[1]


def load_file(name: str, path: Path) -> ModuleType:
    """The module of a file that is not in an installed package (test.py, tests/media.py; `import test`
    would find the standard library's test package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


test_script = load_file("kvq_test_script", ROOT / "test.py")
_media = load_file("kvq_tests_media", ROOT / "tests" / "media.py")  # tiny videos (needs requirements-dev.txt)
ksvqe_config, make_tiny_dataset, simplevqa_config = _media.ksvqe_config, _media.make_tiny_dataset, _media.simplevqa_config

EXIT_NO_GPU = 4
GPU_CPU_TOLERANCE = 1e-3  # max |score GPU - score CPU|, fp32 with tf32 off (scores are O(1))
AMPS = ("off", "bf16", "fp16")


def fastvqa_config(root: Path, **top: Any) -> dict:
    """FAST-VQA (swin_tiny_grpb) on the KSVQE dataset's technical view."""
    cfg = ksvqe_config(root, **top)
    cfg.update(name="tinyFASTVQA", model={"type": "swin_tiny_grpb", "args": {"swin_tiny_grpb": {
        "backbone": {"pretrained": False}, "head": {}}}}, loss={"plcc": 1.0})
    return cfg


CONFIGS: dict[str, Callable[..., dict]] = {"SimpleVQA": simplevqa_config, "KSVQE": ksvqe_config,
                                           "FAST-VQA": fastvqa_config}


def write_config(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def check_train(data: Path, work: Path, device: torch.device, models: Sequence[str], amps: Sequence[str],
                epochs: int) -> list[str]:
    """Train each model with each amp setting; print steps/s and peak memory; return failures."""
    failures = []
    print(f"{'model':10} {'amp':5} {'steps':>5} {'steps/s':>8} {'peak MiB':>9} {'loss':>8}")
    for name in models:
        for amp in amps:
            try:
                cfg = load_config(write_config(work / f"{name}_{amp}.yml", CONFIGS[name](
                    data, epochs=epochs, amp=amp, save_model=False)))
                trainer = Trainer(cfg, TrainOptions(output_dir=work / "out", progress=False), device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for epoch in range(epochs):  # the last one timed (cuDNN autotuning happens in the first)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                    losses, bad = trainer.train_epoch(epoch)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    seconds = time.perf_counter() - t0
                steps = len(trainer.train_loader)
                peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
                loss = losses["train_loss"]
                print(f"{name:10} {amp:5} {steps:5d} {steps / seconds:8.2f} {peak:9.0f} {loss:8.4f}", flush=True)
                if bad or not torch.isfinite(torch.tensor(loss)):
                    failures.append(f"train {name} amp {amp}: loss {loss}, undecodable {bad}")
            except Exception:  # noqa: BLE001 - every failure is reported, the other checks still run
                failures.append(f"train {name} amp {amp}:\n{traceback.format_exc()}")
    return failures


def check_ddp(data: Path, work: Path, world_sizes: Sequence[int]) -> list[str]:
    """train_ddp.py (SimpleVQA, 1 epoch) under torchrun with NCCL for each world size."""
    failures = []
    for n in world_sizes:
        cfg = write_config(work / f"ddp{n}.yml", simplevqa_config(data, epochs=1))
        out = work / f"ddp{n}"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", f"--master_port={free_port()}",
               str(ROOT / "train_ddp.py"), "-o", str(cfg), "-r", str(out), "--log_dir", str(out / "log"),
               "--no_progress"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"})
        ok = proc.returncode == 0 and (out / "tiny_val-ltest_last.pth").is_file()
        print(f"train_ddp.py NCCL world size {n}: {'ok' if ok else 'FAILED'} ({time.perf_counter() - t0:.0f} s)")
        if not ok:
            failures.append(f"train_ddp.py world size {n}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return failures


def score(cfg: Path, ckpt: Path, videos: Path, out: Path, gpu_id: str, *overrides: str) -> list[float]:
    """test.py's scores of the videos listed in `videos`."""
    args = ["-o", str(cfg), "--checkpoint", str(ckpt), "--gpu_id", gpu_id, "--output", str(out), "--no_progress",
            "--num_workers", "0", "--set", f"data.test.args.anno_file={videos}"]
    for o in overrides:
        args += ["--set", o]
    with contextlib.redirect_stdout(io.StringIO()):
        status = test_script.main(args)
    if status != 0:
        raise RuntimeError(f"test.py exited with {status}")
    with open(out, newline="") as f:
        return [float(row[1]) for row in list(csv.reader(f))[1:]]


def check_test(data: Path, work: Path, gpu: Optional[str]) -> list[str]:
    """A trained SimpleVQA checkpoint scored by test.py on 3 videos, on the GPU and the CPU."""
    failures = []
    cfg = write_config(work / "test.yml", simplevqa_config(data, epochs=1, ema=False))
    out = work / "test_train"
    trained = Trainer(load_config(cfg), TrainOptions(output_dir=out, progress=False), torch.device("cpu"))
    trained.train()
    ckpt = trained.ckpt_path("n")
    videos = work / "three.csv"
    videos.write_text("filename\n" + "".join(f"v{i}.mp4\n" for i in range(3)))
    cpu = score(cfg, ckpt, videos, work / "cpu.csv", "cpu")
    if gpu is None:
        print(f"test.py on 3 videos (CPU only): {cpu}")
        return failures
    strict = score(cfg, ckpt, videos, work / "gpu.csv", gpu, "tf32=false")
    fast = score(cfg, ckpt, videos, work / "gpu_tf32.csv", gpu, "tf32=true")
    diff = max(abs(a - b) for a, b in zip(strict, cpu))
    diff_tf32 = max(abs(a - b) for a, b in zip(fast, cpu))
    ok = len(strict) == len(cpu) == 3 and diff <= GPU_CPU_TOLERANCE
    print(f"test.py on 3 videos: max |GPU - CPU| {diff:.2e} with tf32 off (tolerance {GPU_CPU_TOLERANCE:g}), "
          f"{diff_tf32:.2e} with tf32 on: {'ok' if ok else 'FAILED'}")
    if not ok:
        failures.append(f"test.py GPU vs CPU: {strict} vs {cpu}")
    return failures


def guarded(check: Callable[..., list[str]], *args: Any, **kwargs: Any) -> list[str]:
    """The check's failures; an exception it raises is one failure (the other checks still run)."""
    try:
        return check(*args, **kwargs)
    except Exception:  # noqa: BLE001
        return [f"{check.__name__}:\n{traceback.format_exc()}"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--work", type=Path, default=None, help="folder for data and outputs (default: a temporary one)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(log_level(args))
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvq_gpu_check_")))
        t0 = time.perf_counter()
        data = make_tiny_dataset(work / "data", n=6, frames=24)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: "
              + (", ".join(torch.cuda.get_device_name(i) for i in range(gpus)) or "none"))
        if not gpus:
            print("no CUDA GPU: GPU checks SKIPPED; running a short CPU pass of the same code paths")
            failures = guarded(check_train, data, work, torch.device("cpu"), ["SimpleVQA"], ["off"], epochs=1)
            failures += guarded(check_test, data, work, None)
        else:
            failures = guarded(check_train, data, work, torch.device("cuda:0"), list(CONFIGS), AMPS, epochs=2)
            torch.cuda.empty_cache()  # the torchrun processes below get the memory back
            failures += guarded(check_ddp, data, work, [1, 2] if gpus >= 2 else [1])
            if gpus < 2:
                print("train_ddp.py world size 2 skipped: 1 GPU")
            failures += guarded(check_test, data, work, "0")
        print(f"\n{time.perf_counter() - t0:.0f} s")
        for failure in failures:
            print(f"FAILED: {failure}")
        if failures:
            return 1
        if not gpus:
            print(f"CPU pass ok; GPU checks not run (exit status {EXIT_NO_GPU})")
            return EXIT_NO_GPU
        print("all GPU checks passed")
        return 0


if __name__ == "__main__":
    run_main(main)
