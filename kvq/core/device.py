"""Device selection: the GPUs asked for (an error when they are not there), CUDA when present, else the CPU."""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn

from kvq.core.errors import UserError

log = logging.getLogger(__name__)


class DeviceError(UserError, ValueError):
    """A --gpu_id that names GPUs this machine cannot use (the CLIs exit 2 with the message)."""


def select_devices(gpu_id: Optional[str], flag: str = "--gpu_id") -> tuple[torch.device, list[int]]:
    """'0,1' -> (cuda:0, [0, 1]); 'cpu' -> (cpu, []); None or '' -> cuda:0 when CUDA is
    available, else the CPU. GPUs that are named but not there raise DeviceError (never a silent
    fall-back to the CPU); `flag` is the option named in the message. The first GPU becomes the
    current CUDA device (else pinned-memory threads and new CUDA tensors open a context on GPU 0)."""
    if gpu_id is not None and gpu_id.strip().lower() == "cpu":
        return torch.device("cpu"), []
    if not gpu_id or not gpu_id.strip():
        if not torch.cuda.is_available():
            return torch.device("cpu"), []
        torch.cuda.set_device(0)
        return torch.device("cuda:0"), [0]
    try:
        ids = [int(x) for x in gpu_id.split(",") if x.strip()]
    except ValueError:
        raise DeviceError(f"{flag} must be 'cpu' or a comma-separated list of GPU numbers, got {gpu_id!r}") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    bad = [i for i in ids if not 0 <= i < count]
    if bad:
        visible = f"GPUs 0..{count - 1}" if count else "no CUDA GPU"
        raise DeviceError(f"{flag} {gpu_id}: GPU {', '.join(map(str, bad))} not available; this machine has "
                          f"{count} visible GPU(s) ({visible}); use {flag} cpu for the CPU")
    device = torch.device(f"cuda:{ids[0]}")
    torch.cuda.set_device(device)
    return device, ids


def autocast(device: torch.device, amp: str):
    """torch.autocast for 'bf16' / 'fp16', a no-op context for 'off'."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def check_amp(device: torch.device, amp: str) -> None:
    """Warn when `amp: bf16` runs on a GPU without native bf16 (compute capability below 8.0,
    e.g. V100, T4) or a CPU without it (no AVX512-BF16 / AMX): it is emulated there, slower than
    fp16 or fp32."""
    if amp == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning("amp: bf16 on a CPU without native bf16 (AVX512-BF16 or AMX): it is emulated and slow")
    if amp == "bf16" and device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        major, minor = torch.cuda.get_device_capability(device)
        log.warning("amp: bf16 on %s (compute capability %d.%d) has no native bf16: it is emulated and slow; "
                    "use amp: fp16 (with loss scaling) or off on this GPU", device, major, minor)


class AutocastForward(nn.Module):
    """`module` whose forward runs under `autocast(amp)` of the device its parameters are on.

    Autocast state is thread-local: DataParallel's replica threads re-enter autocast with the
    device's default dtype (fp16 on CUDA), not the configured one; this wrapper makes each
    replica use `amp` (DataParallel(AutocastForward(model, amp)))."""

    def __init__(self, module: nn.Module, amp: str) -> None:
        super().__init__()
        self.module = module
        self.amp = amp

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        device = next(self.module.parameters()).device
        with autocast(device, self.amp):
            return self.module(*args, **kwargs)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put every convolution weight in channels-last memory format, in place (4-D weights:
    channels_last, 5-D: channels_last_3d); convolutions then run and return channels-last
    activations, which oneDNN (CPU) and cuDNN (GPU) compute faster. Values are unchanged."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            fmt = torch.channels_last if module.weight.dim() == 4 else torch.channels_last_3d
            module.weight.data = module.weight.data.contiguous(memory_format=fmt)
    return model


def configure_backends(device: torch.device, tf32: bool, cudnn_benchmark: bool) -> None:
    """Config `tf32` / `cudnn_benchmark` applied to torch's CUDA backends (process-wide) and
    logged; nothing changes on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    log.info("CUDA backends: TF32 matmul/conv %s, cudnn.benchmark %s", "on" if tf32 else "off",
             "on" if cudnn_benchmark else "off")
