"""SimpleVQA backbone: ResNet-50 spatial features (mean + std pooled) joined with SlowFast features.

The parameter names are those of the reference `simpleVQA_model.resnet50` (`conv1`, `bn1`,
`layer1`..`layer4`), so `simpleVQA_backbone.*` keys of reference checkpoints load unchanged.
The reference backbone also owns a `quality` MLP that its forward never calls; it is not built
here and `remap_reference_keys` drops its keys.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional

import torch
import torchvision
from torch import nn

from kvq.checkpoint import extract_state_dict
from kvq.registry import BACKBONES
from kvq.weights import resolve_weight

log = logging.getLogger(__name__)

DEAD_MLP_REASON = "unused MLP of the reference backbone"


def mean_std_pool(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, 2C]: global mean then global (unbiased) std over H*W, per channel,
    computed in float32 (under bf16/fp16 autocast too: a std of low-precision values loses the
    small differences quality depends on)."""
    flat = x.flatten(2).float()
    return torch.cat((flat.mean(dim=2), torch.std(flat, dim=2)), dim=1)


@BACKBONES.register("simpleVQA")
class SimpleVQABackbone(nn.Module):
    """ResNet-50 trunk; per frame [avg2, std2, avg3, std3, avg4, std4, slowfast] = 9472 channels.

    forward(batch): batch["simpleVQA"] [B, 3, T, H, W] frames, batch["feat"] [B, T, 2304]
    SlowFast features (slow 2048 ‖ fast 256) -> [B, T, 9472].
    """

    head_type = "SimpleVQAHead"
    head_defaults = {"in_channels": 9472, "hidden_channels": 128}
    weight_args = {"resnet50_imagenet": "pretrained_path"}  # weight record -> argument giving its path

    def __init__(self, pretrained: bool = True, pretrained_path: Optional[str | os.PathLike] = None) -> None:
        super().__init__()
        trunk = torchvision.models.resnet50(weights=None)
        self.conv1 = trunk.conv1
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.maxpool = trunk.maxpool
        self.layer1 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3
        self.layer4 = trunk.layer4
        if pretrained:
            self.load_imagenet(pretrained_path)

    def load_imagenet(self, path: Optional[str | os.PathLike] = None) -> None:
        """Load torchvision-format ImageNet ResNet-50 weights (record "resnet50_imagenet"); fc.* is dropped."""
        file = resolve_weight("resnet50_imagenet", path)
        state = extract_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(
                f"{file} is not a torchvision ResNet-50 state dict: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}")
        log.info("simpleVQA backbone: ImageNet ResNet-50 weights loaded from %s", file)

    @staticmethod
    def remap_reference_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
        """Drop the reference backbone's dead `quality.*` MLP; other keys are already ours."""
        kept = {k: v for k, v in state.items() if not k.startswith("quality.")}
        dropped = {k: DEAD_MLP_REASON for k in state if k.startswith("quality.")}
        return kept, dropped

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        video = batch["simpleVQA"]
        b, c, t, h, w = video.shape
        motion = batch["feat"].to(device=video.device, dtype=video.dtype)
        if motion.shape[:2] != (b, t):
            raise ValueError(f"batch['feat'] {tuple(motion.shape)} does not match {t} frames of "
                             f"batch['simpleVQA'] {tuple(video.shape)}")
        x = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        pooled = [mean_std_pool(x)]
        x = self.layer3(x)
        pooled.append(mean_std_pool(x))
        x = self.layer4(x)
        pooled.append(mean_std_pool(x))
        pooled.append(motion.reshape(b * t, -1))
        return torch.cat(pooled, dim=1).view(b, t, -1)
