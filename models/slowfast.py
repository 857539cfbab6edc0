"""SlowFast R50 (Kinetics-400) feature extractor of SimpleVQA, as cut by the reference
SlowFast_features.py, and its frame preprocessing.

`feature_extraction` = pytorchvideo `slowfast_r50` blocks 0-4 (stem, res2-res5 with fast-to-slow
fusions), built here in plain torch with pytorchvideo's module names, so that its keys are the
reference extractor's `feature_extraction.<i>.*` and pytorchvideo's checkpoints load unchanged
(importing pytorchvideo costs torchvision and torch._dynamo: about 1.6 s and 170 MiB). The slow
pathway is pooled by blocks[5].pool[0] (AvgPool3d (8, 7, 7)), the fast one by blocks[5].pool[1]
(AvgPool3d (32, 7, 7)), both then by blocks[6].output_pool (AdaptiveAvgPool3d 1). These have no
parameters. tests/models/test_slowfast.py checks keys, shapes, seeded random weights and outputs
against pytorchvideo's own network.
"""
from __future__ import annotations

import logging
import operator
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from kvq.core.weights import WEIGHTS, resolve_weight

log = logging.getLogger(__name__)

CLIP_FRAMES = 32
NUM_BLOCKS = 5
SLOWFAST_MEAN = WEIGHTS["slowfast_r50_k400"].mean
SLOWFAST_STD = WEIGHTS["slowfast_r50_k400"].std
# (convolution, the BatchNorm right after it) attribute pairs of the stem, bottleneck, residual
# block (shortcut) and fast-to-slow fusion modules
CONV_NORM_PAIRS = (("conv", "norm"), ("conv_a", "norm_a"), ("conv_b", "norm_b"), ("conv_c", "norm_c"),
                   ("branch1_conv", "branch1_norm"), ("conv_fast_to_slow", "norm"))
STAGE_DEPTHS = (3, 4, 6, 3)  # residual blocks of res2-res5 (ResNet-50)
SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)  # conv_a of the slow pathway's res2-res5 (the fast one: 3 everywhere)
BETA = 8  # slow channels / fast channels
FUSION_RATIO = 2  # fusion output channels / fast channels
KINETICS_CLASSES = 400


class BasicStem(nn.Module):
    """[N, 3, T, H, W] -> [N, C, T, H/4, W/4]: conv (kt, 7, 7) stride (1, 2, 2), BatchNorm, ReLU,
    max pool (1, 3, 3) stride (1, 2, 2) (pytorchvideo `ResNetBasicStem`)."""

    def __init__(self, out_channels: int, temporal_kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, out_channels, (temporal_kernel, 7, 7), stride=(1, 2, 2),
                              padding=(temporal_kernel // 2, 3, 3), bias=False)
        self.norm: Optional[nn.BatchNorm3d] = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.pool(self.activation(x))


class Bottleneck(nn.Module):
    """[N, C_in, T, H, W] -> [N, C_out, T, H/s, W/s]: conv_a (kt, 1, 1) -> C_inner, BatchNorm, ReLU;
    conv_b (1, 3, 3) stride (1, s, s), BatchNorm, ReLU; conv_c 1x1x1 -> C_out, BatchNorm
    (pytorchvideo `BottleneckBlock`)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                                bias=False)
        self.norm_a: Optional[nn.BatchNorm3d] = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                                bias=False)
        self.norm_b: Optional[nn.BatchNorm3d] = nn.BatchNorm3d(dim_inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, (1, 1, 1), bias=False)
        self.norm_c: Optional[nn.BatchNorm3d] = nn.BatchNorm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm, act in ((self.conv_a, self.norm_a, self.act_a), (self.conv_b, self.norm_b, self.act_b),
                                (self.conv_c, self.norm_c, None)):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            if act is not None:
                x = act(x)
        return x


class ResBlock(nn.Module):
    """[N, C_in, T, H, W] -> [N, C_out, T, H/s, W/s]: ReLU(branch_fusion(shortcut, branch2(x))),
    the shortcut a 1x1x1 conv stride (1, s, s) + BatchNorm where the shape changes, else x
    (pytorchvideo `ResBlock`)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int) -> None:
        super().__init__()
        projected = dim_in != dim_out or stride != 1
        self.branch1_conv = (nn.Conv3d(dim_in, dim_out, (1, 1, 1), stride=(1, stride, stride), bias=False)
                             if projected else None)
        self.branch1_norm: Optional[nn.BatchNorm3d] = nn.BatchNorm3d(dim_out) if projected else None
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, temporal_kernel, stride)
        self.activation = nn.ReLU()
        self.branch_fusion = operator.add  # (shortcut, branch) -> their sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(self.branch_fusion(shortcut, self.branch2(x)))


class ResStage(nn.Module):
    """`depth` residual blocks, the first one with the stride and the channel change (pytorchvideo `ResStage`)."""

    def __init__(self, depth: int, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int,
                 stride: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, temporal_kernel, stride if i == 0 else 1)
            for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FastToSlowFusion(nn.Module):
    """[slow [N, Cs, T/4, H, W], fast [N, Cf, T, H, W]] -> [slow [N, Cs + 2 Cf, T/4, H, W], fast]:
    the fast pathway through conv (7, 1, 1) stride (4, 1, 1) -> 2 Cf channels, BatchNorm, ReLU,
    concatenated after the slow channels (pytorchvideo `FuseFastToSlow`)."""

    def __init__(self, fast_channels: int) -> None:
        super().__init__()
        out = fast_channels * FUSION_RATIO
        self.conv_fast_to_slow = nn.Conv3d(fast_channels, out, (7, 1, 1), stride=(4, 1, 1), padding=(3, 0, 0),
                                           bias=False)
        self.norm: Optional[nn.BatchNorm3d] = nn.BatchNorm3d(out)
        self.activation = nn.ReLU()

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = x
        fuse = self.conv_fast_to_slow(fast)
        if self.norm is not None:
            fuse = self.norm(fuse)
        return [torch.cat([slow, self.activation(fuse)], 1), fast]


class TwoPathways(nn.Module):
    """[slow, fast] -> each through its own block, then the fusion (pytorchvideo `MultiPathWayWithFuse`)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: nn.Module) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.multipathway_fusion([block(p) for block, p in zip(self.multipathway_blocks, x)])


def slowfast_r50_blocks() -> nn.Sequential:
    """pytorchvideo `slowfast_r50().blocks[:5]`: [slow [N, 3, 8, H, W], fast [N, 3, 32, H, W]] ->
    [slow [N, 2048, 8, H/32, W/32], fast [N, 256, 32, H/32, W/32]]. Modules are made in
    pytorchvideo's order, so that a seeded default initialisation draws the same numbers."""
    blocks: list[nn.Module] = [TwoPathways(BasicStem(64, 1), BasicStem(64 // BETA, 5), FastToSlowFusion(64 // BETA))]
    slow_in, fast_in, dim_out = 64 + 64 // BETA * FUSION_RATIO, 64 // BETA, 256
    for i, depth in enumerate(STAGE_DEPTHS):
        stride = 1 if i == 0 else 2
        slow = ResStage(depth, slow_in, dim_out // 4, dim_out, SLOW_TEMPORAL_KERNELS[i], stride)
        fast = ResStage(depth, fast_in, dim_out // 4 // BETA, dim_out // BETA, 3, stride)
        last = i == len(STAGE_DEPTHS) - 1
        blocks.append(TwoPathways(slow, fast, nn.Identity() if last else FastToSlowFusion(dim_out // BETA)))
        slow_in, fast_in = dim_out + dim_out // BETA * FUSION_RATIO, dim_out // BETA
        dim_out *= 2
    return nn.Sequential(*blocks)


@torch.no_grad()
def init_random_weights(blocks: nn.Module) -> None:
    """pytorchvideo's initialisation of `slowfast_r50(pretrained=False)`, draw for draw (call
    right after `slowfast_r50_blocks()` on the CPU): convolutions Kaiming-normal (fan_out, ReLU),
    BatchNorm weight 1 and bias 0, except a bottleneck's last BatchNorm (weight 0). So a seeded
    random network (`--no_pretrained --seed S`) is the one pytorchvideo made, and its feature
    cache stays valid."""
    nn.Linear(2048 + 2048 // BETA, KINETICS_CLASSES)  # pytorchvideo's head (not kept) draws its default init here
    for module in blocks.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, Bottleneck) and module.norm_c is not None:
            nn.init.zeros_(module.norm_c.weight)


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
            self.feature_extraction = slowfast_r50_blocks()
            if not pretrained:
                init_random_weights(self.feature_extraction)
        self.slow_avg_pool = nn.AvgPool3d((CLIP_FRAMES // 4, 7, 7), stride=(1, 1, 1), padding=(0, 0, 0))
        self.fast_avg_pool = nn.AvgPool3d((CLIP_FRAMES, 7, 7), stride=(1, 1, 1), padding=(0, 0, 0))
        self.adp_avg_pool = nn.AdaptiveAvgPool3d(1)
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
        module then None), ReLUs and residual additions in place. Values
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
            raise RuntimeError(f"BatchNorm modules not folded: {left[:5]}")
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
