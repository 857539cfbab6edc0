"""SlowFast R50 (Kinetics-400) feature extractor of SimpleVQA, as cut by the reference
SlowFast_features.py, and its frame preprocessing.

`feature_extraction` = pytorchvideo `slowfast_r50` blocks 0-4 (stem, res2-res5 with fusions), so
its keys are the reference extractor's `feature_extraction.<i>.*`. The slow pathway is pooled by
blocks[5].pool[0] (AvgPool3d (8, 7, 7)), the fast one by blocks[5].pool[1] (AvgPool3d (32, 7, 7)),
both then by blocks[6].output_pool (AdaptiveAvgPool3d 1). These have no parameters.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional

import numpy as np
import torch
from pytorchvideo.models.hub import slowfast_r50
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from kvq.weights import WEIGHTS, resolve_weight

log = logging.getLogger(__name__)

CLIP_FRAMES = 32
NUM_BLOCKS = 5
SLOWFAST_MEAN = WEIGHTS["slowfast_r50_k400"].mean
SLOWFAST_STD = WEIGHTS["slowfast_r50_k400"].std
# (convolution, the BatchNorm right after it) attribute pairs of pytorchvideo's stem, bottleneck,
# residual block (shortcut) and fast-to-slow fusion modules
CONV_NORM_PAIRS = (("conv", "norm"), ("conv_a", "norm_a"), ("conv_b", "norm_b"), ("conv_c", "norm_c"),
                   ("branch1_conv", "branch1_norm"), ("conv_fast_to_slow", "norm"))


def to_extractor_keys(checkpoint: Mapping[str, Any]) -> tuple[dict, dict]:
    """Map a SlowFast state dict onto `SlowFastExtractor` keys.

    Accepts the pytorchvideo checkpoint (`{"model_state": {"blocks.<i>.*": ...}}`) or a bare
    pytorchvideo state dict (`blocks.<i>.*`, i < 5 -> `feature_extraction.<i>.*`) or the
    reference extractor's own keys (`feature_extraction.*`, unchanged).
    Returns (state dict, {dropped key: reason}).
    """
    state = checkpoint.get("model_state", checkpoint)
    mapped: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            index = int(key.split(".")[1])
            if index < NUM_BLOCKS:
                mapped["feature_extraction." + key[len("blocks."):]] = value
            else:
                dropped[key] = "Kinetics classification head, not part of the feature extractor"
        else:
            mapped[key] = value
    return mapped, dropped


def pack_pathways(clips: torch.Tensor) -> list[torch.Tensor]:
    """[N, 3, T, H, W] -> [slow [N, 3, T//4, H, W] (frames linspace(0, T-1, T//4)), fast = clips]."""
    index = torch.linspace(0, clips.shape[2] - 1, clips.shape[2] // 4).long().to(clips.device)
    return [torch.index_select(clips, 2, index), clips]


def add_into_branch(shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """A residual block's shortcut + branch, added into `branch` (its own fresh output)."""
    return branch.add_(shortcut)


class SlowFastExtractor(nn.Module):
    """forward(clips [N, 3, 32, H, W], normalised) -> (slow [N, 2048, 1, 1, 1], fast [N, 256, 1, 1, 1]).

    A frozen extractor as in the reference: forward runs without autograd; call `.eval()` before
    use (BatchNorm running statistics). In eval mode every clip is processed independently, so
    N clips in one call give the values of N single-clip calls.
    """

    def __init__(self, pretrained: bool = True, pretrained_path: Optional[str | os.PathLike] = None) -> None:
        super().__init__()
        # with weights to load, the network is built without memory (meta tensors): the file's
        # tensors are then assigned in place of random ones (load_kinetics)
        with torch.device("meta" if pretrained else "cpu"):
            net = slowfast_r50(pretrained=False)
        self.feature_extraction = nn.Sequential(*net.blocks[:NUM_BLOCKS])
        self.slow_avg_pool = net.blocks[5].pool[0]
        self.fast_avg_pool = net.blocks[5].pool[1]
        self.adp_avg_pool = net.blocks[6].output_pool
        if pretrained:
            self.load_kinetics(pretrained_path)

    def load_kinetics(self, path: Optional[str | os.PathLike] = None) -> None:
        """Load the pytorchvideo Kinetics-400 checkpoint (record "slowfast_r50_k400"), strictly
        (every key, no others). The file's tensors become the module's own (assigned; the module is
        built without memory): one copy of the weights. Not memory-mapped: `fuse_for_inference`
        frees each tensor it replaces, where a mapping of the file would stay until the last one."""
        file = resolve_weight("slowfast_r50_k400", path)
        state, _ = to_extractor_keys(torch.load(file, map_location="cpu", weights_only=True))
        own = self.state_dict()
        state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}  # assign keeps dtypes
        self.load_state_dict(state, strict=True, assign=True)
        log.info("SlowFast R50 Kinetics-400 weights loaded from %s", file)

    @torch.no_grad()
    def fuse_for_inference(self) -> "SlowFastExtractor":
        """Inference-only form, in place (call after loading weights, in eval mode): every
        BatchNorm folded into the convolution before it (conv weight scaled, bias added; its
        module then None, as pytorchvideo allows), ReLUs and residual additions in place. Values
        equal the unfused network's up to float rounding; the state dict no longer has BatchNorm
        keys. Fewer passes over the activations: about 30% of a CPU forward was BatchNorm, ReLU
        and addition. Returns self."""
        if self.training:
            raise RuntimeError("fuse_for_inference needs eval mode: BatchNorm folds its running statistics")
        for module in self.feature_extraction.modules():
            for conv_name, norm_name in CONV_NORM_PAIRS:
                conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
                if isinstance(conv, nn.Conv3d) and isinstance(norm, nn.BatchNorm3d):
                    conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean,
                                                                  norm.running_var, norm.eps, norm.weight, norm.bias)
                    setattr(module, norm_name, None)
            if isinstance(module, nn.ReLU):
                module.inplace = True  # its input is always a fresh convolution or addition output
            if hasattr(module, "branch_fusion"):  # residual block: shortcut + branch2(x)
                module.branch_fusion = add_into_branch
        left = [n for n, m in self.named_modules() if isinstance(m, nn.BatchNorm3d)]
        if left:
            raise RuntimeError(f"BatchNorm modules not folded (pytorchvideo's layout changed?): {left[:5]}")
        return self

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if clips.dim() != 5 or clips.shape[1] != 3 or clips.shape[2] != CLIP_FRAMES:
            raise ValueError(f"expected clips [N, 3, {CLIP_FRAMES}, H, W], got {tuple(clips.shape)}")
        device = next(self.parameters()).device
        slow, fast = self.feature_extraction(pack_pathways(clips.to(device)))
        return self.adp_avg_pool(self.slow_avg_pool(slow)), self.adp_avg_pool(self.fast_avg_pool(fast))


def preprocess_frames(frames: np.ndarray | torch.Tensor, size: int = 224) -> torch.Tensor:
    """RGB uint8 frames [T, H, W, 3] -> normalised float32 [3, T, size, size].

    Resize to size x size (aspect ratio not kept), /255, mean 0.45, std 0.225, as the reference
    (PIL `transforms.Resize([224, 224])` bilinear, `ToTensor`, `Normalize`). The resize is torch's
    antialiased bilinear on uint8 frames in channels-last memory, which computes with PIL's
    fixed-point weights: where it downscales, it differs from PIL's by one grey level (0.0174 after
    normalisation) on about 0.2% of the values of noise images (a side enlarged: about 25%), and it
    is about 20x faster than resizing in float.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames.contiguous()
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    x = F.interpolate(x.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True)  # [T, 3, size, size], channels-last memory
    out = torch.empty((3, x.shape[0], size, size), dtype=torch.float32)
    out.copy_(x.permute(1, 0, 2, 3))  # one pass: uint8 -> float and the [3, T] layout
    mean = torch.tensor(SLOWFAST_MEAN, dtype=out.dtype).view(3, 1, 1, 1)
    std = torch.tensor(SLOWFAST_STD, dtype=out.dtype).view(3, 1, 1, 1)
    return out.div_(255.0).sub_(mean).div_(std)
