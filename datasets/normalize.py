"""Normalisation of uint8 clips into float model inputs ([C,T,H,W] or [B,C,T,H,W] -> float32).

The datasets send uint8 frames and name each view's normalisation (`NORMALIZATIONS`); the engine
applies it after the host-to-device copy (kvq.eval.predict.clip_inputs)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Normalization:
    """out = (x * scale - mean) / std, per channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """[3, T, H, W] or [B, 3, T, H, W] uint8 or float -> a new float32 tensor on the input's
        device (the input is left unchanged)."""
        mean = torch.tensor(self.mean, device=video.device).view(3, 1, 1, 1)
        std = torch.tensor(self.std, device=video.device).view(3, 1, 1, 1)
        out = video.to(torch.float32, copy=True)
        if self.scale != 1.0:
            out.mul_(self.scale)
        return out.sub_(mean).div_(std)


# Swin/FAST-VQA fragments, on 0-255 values (reference)
TECHNICAL = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
# CLIP view of KSVQE, on [0, 1] (reference)
CLIP = Normalization((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), 1 / 255)
# SimpleVQA, ImageNet statistics on [0, 1] (correct)
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1 / 255)
# SimpleVQA as the reference did it: ImageNet statistics applied to 0-255 values (checkpoints trained so)
IMAGENET_0_255 = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0)

# SimpleVQA on a backbone trained on [-1, 1] inputs (TF/Inception-style: EfficientNet-Lite0), on [0, 1]
INCEPTION = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1 / 255)

# a SimpleVQA backbone's weight record (kvq.core.weights: mean, std) says which of these fits it
SIMPLEVQA = {"imagenet": IMAGENET, "reference_0_255": IMAGENET_0_255, "inception": INCEPTION}
# by the name a sample gives in sample["normalization"][view]
NORMALIZATIONS = {"technical": TECHNICAL, "clip": CLIP, **SIMPLEVQA}
