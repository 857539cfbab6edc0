"""scripts/gpu_check.py: which checks run with and without GPUs, and its exit statuses."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import gpu_check  # noqa: E402


def fake_checks(monkeypatch, gpus: int, fail: str = "") -> list:
    calls = []
    monkeypatch.setattr(gpu_check, "make_tiny_dataset", lambda root, **kw: root)
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(gpu_check.torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(gpu_check.torch.cuda, "get_device_name", lambda i: f"GPU{i}")
    for name in ("check_train", "check_ddp", "check_test"):
        def check(*args, _name=name, **kw):
            calls.append((_name, args[2:]))
            return [f"{_name} broke"] if _name == fail else []
        monkeypatch.setattr(gpu_check, name, check)
    return calls


def test_gpu_checks_cover_models_amps_ddp_and_test(monkeypatch, tmp_path: Path, capsys) -> None:
    calls = fake_checks(monkeypatch, gpus=2)
    assert gpu_check.main(["--work", str(tmp_path)]) == 0
    device = gpu_check.torch.device("cuda:0")
    assert calls == [("check_train", (device, ["SimpleVQA", "KSVQE", "FAST-VQA"], ("off", "bf16", "fp16"))),
                     ("check_ddp", ([1, 2],)), ("check_test", ("0",))]
    assert "all GPU checks passed" in capsys.readouterr().out


def test_one_gpu_skips_ddp_world_size_2_and_a_failure_exits_1(monkeypatch, tmp_path: Path, capsys) -> None:
    calls = fake_checks(monkeypatch, gpus=1, fail="check_ddp")
    assert gpu_check.main(["--work", str(tmp_path)]) == 1
    assert ("check_ddp", ([1],)) in calls
    out = capsys.readouterr().out
    assert "world size 2 skipped" in out and "FAILED: check_ddp broke" in out


def test_without_cuda_gpu_parts_are_skipped_with_status_4(monkeypatch, tmp_path: Path, capsys) -> None:
    calls = fake_checks(monkeypatch, gpus=0)
    assert gpu_check.main(["--work", str(tmp_path)]) == gpu_check.EXIT_NO_GPU == 4
    assert [c[0] for c in calls] == ["check_train", "check_test"] and calls[1][1] == (None,)
    assert "GPU checks SKIPPED" in capsys.readouterr().out


@pytest.mark.slow
def test_cpu_pass_runs_for_real(tmp_path: Path) -> None:
    """The CPU pass (no GPU here): tiny data, a SimpleVQA epoch, test.py on 3 videos."""
    if gpu_check.torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the full check is scripts/gpu_check.sh")
    assert gpu_check.main(["--work", str(tmp_path)]) == gpu_check.EXIT_NO_GPU
