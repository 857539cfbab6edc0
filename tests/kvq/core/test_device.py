"""The fast inference path: bf16 autocast and channels-last convolutions give the fp32 scores
(channels-last exactly up to float rounding, bf16 within its precision)."""
import pytest
import torch

from kvq.core.device import autocast, to_channels_last
from kvq.eval.predict import predict
from models import VQANetwork


@pytest.fixture(scope="module")
def model_and_batches() -> tuple[VQANetwork, list[dict]]:
    torch.manual_seed(0)
    model = VQANetwork({"simpleVQA": {"backbone": {"pretrained": False}, "head": {}}}).eval()
    batches = [{"simpleVQA": torch.randn(2, 3, 2, 64, 64), "feat": torch.randn(2, 2, 2304),
                "video_name": [f"v{i}a", f"v{i}b"], "label": torch.tensor([1.0, 2.0]), "bad_videos": []}
               for i in range(2)]
    return model, batches


def test_channels_last_moves_conv_weights_and_keeps_scores(model_and_batches) -> None:
    model, batches = model_and_batches
    cpu = torch.device("cpu")
    fp32 = predict(model, batches, cpu, "off", progress=False)
    to_channels_last(model)
    conv = model.simpleVQA_backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    fast = predict(model, batches, cpu, "off", progress=False)
    bf16 = predict(model, batches, cpu, "bf16", progress=False)
    assert fast.names == fp32.names == bf16.names
    ref = torch.tensor(fp32.scores)
    assert torch.allclose(torch.tensor(fast.scores), ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(torch.tensor(bf16.scores), ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))


def test_channels_last_3d_for_conv3d() -> None:
    conv = torch.nn.Conv3d(3, 4, 3)
    x = torch.randn(1, 3, 4, 8, 8)
    ref = conv(x)
    to_channels_last(conv)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(conv(x), ref, atol=1e-5)


def test_autocast_off_is_fp32() -> None:
    with autocast(torch.device("cpu"), "off"):
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.bfloat16


def test_heads_compute_in_float32_under_autocast() -> None:
    """Heads keep float32 under bf16 autocast (their long dot products decide the ranking): the
    same scores as outside autocast for the same (bf16-representable) input."""
    from models.heads import SimpleVQAHead, VQAHead

    torch.manual_seed(0)
    for head, x in ((SimpleVQAHead().eval(), torch.randn(2, 4, 9472)),
                    (VQAHead().eval(), torch.randn(2, 768, 2, 3, 3))):
        x = x.bfloat16().float()
        with autocast(torch.device("cpu"), "bf16"):
            out = head(x)
        assert out.dtype == torch.float32
        assert torch.allclose(out, head(x), atol=1e-6)


@pytest.fixture
def cuda_backend_flags():
    """Restores torch's process-wide CUDA backend switches after the test."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_cuda_backend_switches_follow_the_config_on_cuda_only(cuda_backend_flags, caplog) -> None:
    from kvq.core.device import configure_backends

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    configure_backends(torch.device("cpu"), True, True)  # the CPU: nothing changes
    assert not (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
                or torch.backends.cudnn.benchmark)
    with caplog.at_level("INFO", logger="kvq.core.device"):
        configure_backends(torch.device("cuda:0"), True, True)  # flags only: no GPU needed
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark
    assert "TF32 matmul/conv on, cudnn.benchmark on" in caplog.text
    configure_backends(torch.device("cuda:0"), False, False)
    assert not (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
                or torch.backends.cudnn.benchmark)


def test_trainer_applies_the_cuda_backend_switches(cuda_backend_flags, monkeypatch, tmp_path) -> None:
    import kvq.engine.trainer

    calls = []
    monkeypatch.setattr(kvq.engine.trainer, "configure_backends", lambda *a: calls.append(a))
    monkeypatch.setattr(kvq.engine.trainer, "check_training", lambda *a: None)
    monkeypatch.setattr(kvq.engine.trainer, "build_dataset", lambda spec: (_ for _ in ()).throw(RuntimeError("stop")))
    cfg = {"name": "x", "seed": 0, "tf32": False, "cudnn_benchmark": True, "data": {"train": {}}}
    with pytest.raises(RuntimeError, match="stop"):
        kvq.engine.trainer.Trainer(cfg, kvq.engine.trainer.TrainOptions(output_dir=tmp_path), torch.device("cuda:0"))
    assert calls == [(torch.device("cuda:0"), False, True)]


def _dtype_in_a_replica_thread(module: torch.nn.Module, amp: str) -> torch.dtype:
    """DataParallel runs each replica's forward in a new thread; autocast state is thread-local,
    so the thread sees the caller's autocast only if the module enters it itself."""
    import threading

    seen = []
    with autocast(torch.device("cpu"), amp):
        thread = threading.Thread(target=lambda: seen.append(module(torch.randn(2, 4)).dtype))
        thread.start()
        thread.join()
    return seen[0]


def test_data_parallel_replicas_compute_in_the_configured_dtype() -> None:
    from types import SimpleNamespace

    from kvq.core.device import AutocastForward
    from kvq.engine.train_state import bare
    from kvq.engine.trainer import Trainer

    linear = torch.nn.Linear(4, 3)
    assert _dtype_in_a_replica_thread(linear, "bf16") == torch.float32  # what a bare replica gets
    fake = SimpleNamespace(dist=SimpleNamespace(enabled=False), opts=SimpleNamespace(device_ids=[0, 1]),
                           cfg={"amp": "bf16"})
    wrapped = Trainer._wrap(fake, linear)
    assert isinstance(wrapped, torch.nn.DataParallel) and bare(wrapped) is linear
    assert _dtype_in_a_replica_thread(wrapped.module, "bf16") == torch.bfloat16
    assert _dtype_in_a_replica_thread(AutocastForward(linear, "off"), "bf16") == torch.float32


def test_bf16_on_a_gpu_without_native_bf16_warns(monkeypatch, caplog) -> None:
    from kvq.core.device import check_amp

    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # V100
    check_amp(gpu, "bf16")
    assert "compute capability 7.0" in caplog.text and "no native bf16" in caplog.text
    caplog.clear()
    check_amp(gpu, "fp16")
    check_amp(torch.device("cpu"), "bf16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    check_amp(gpu, "bf16")
    assert not caplog.text


def test_the_first_listed_gpu_becomes_the_current_device(monkeypatch) -> None:
    from kvq.core.device import select_devices

    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert select_devices("1") == (torch.device("cuda", 1), [1])
    assert current == [torch.device("cuda", 1)]  # pinned-memory threads then use GPU 1, not GPU 0
