"""SimpleVQA backbone: spatial features (mean + std pooled per stage) joined with SlowFast features.

The spatial branch is named by `spatial`: "resnet50" (the reference, default) or any timm model
with `feature_info` (timm's `features_only` models: EfficientNet, ConvNeXt, Swin, ...), built with
timm's `pretrained=False` and filled from a local weight file (`kvq.core.weights` record), never
downloaded. For "resnet50" the parameter names are those of the reference `simpleVQA_model.resnet50` (`conv1`, `bn1`,
`layer1`..`layer4`), so `simpleVQA_backbone.*` keys of reference checkpoints load unchanged.
The reference backbone also owns a `quality` MLP that its forward never calls; it is not built
here and `remap_reference_keys` drops its keys.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

import torch
import torchvision
from torch import nn

from kvq.core.checkpoint import extract_state_dict
from kvq.core.registry import did_you_mean
from models.registry import BACKBONES
from kvq.core.weights import WEIGHTS, resolve_weight

log = logging.getLogger(__name__)

DEAD_MLP_REASON = "unused MLP of the reference backbone"
REFERENCE = "resnet50"
RESNET50_CHANNELS = (256, 512, 1024, 2048)  # layer1..layer4
FRAME_SIZE_KEY = "simpleVQA_frame_size"  # datasets.kvq_datasets.frame_size_key("simpleVQA")


def map_by_position(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], file: Any
                    ) -> dict[str, torch.Tensor]:
    """`state`'s tensors renamed to `target`'s keys, pairing them in order. Raises ValueError
    naming `file` unless both hold as many tensors and every pair has the same shape and the same
    kind (last name part: weight, bias, running_mean...)."""
    if len(state) != len(target):
        raise ValueError(f"{file}: {len(state)} tensors, the model has {len(target)}: not the same network")
    out = {}
    for (k, v), (name, t) in zip(state.items(), target.items()):
        if v.shape != t.shape or k.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1]:
            raise ValueError(f"{file}: tensor '{k}' {tuple(v.shape)} does not map onto '{name}' "
                             f"{tuple(t.shape)}: the by-position mapping is wrong for this file")
        out[name] = v
    return out


def spatial_record(spatial: str, weights: Optional[str]) -> Optional[str]:
    """The weight record of a spatial branch: `weights`, else "resnet50_imagenet" for the reference."""
    if weights is not None and weights not in WEIGHTS:
        raise ValueError(f"weights '{weights}' is not a weight record (kvq/core/weights.py: {', '.join(WEIGHTS)})")
    return weights or ("resnet50_imagenet" if spatial == REFERENCE else None)


def mean_std_pool(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, 2C]: global mean then global (unbiased) std over H*W, per channel,
    computed in float32 (under bf16/fp16 autocast too: a std of low-precision values loses the
    small differences quality depends on). A map of one pixel has no std (it would be NaN): a
    ValueError (frames too small for the backbone; datasets.views.min_frame_size)."""
    if x.shape[-2] * x.shape[-1] < 2:
        raise ValueError(f"a {x.shape[-2]}x{x.shape[-1]} feature map has no standard deviation: the frames are too "
                         "small for this backbone (native-size frames need at least 33x33 pixels, docs/data.md)")
    flat = x.flatten(2).float()
    return torch.cat((flat.mean(dim=2), torch.std(flat, dim=2)), dim=1)


@BACKBONES.register("simpleVQA")
class SimpleVQABackbone(nn.Module):
    """Spatial trunk + SlowFast; per frame [avg_s, std_s for each chosen stage s, slowfast].

    Reference (spatial "resnet50", stages [2, 3, 4] = layer2..layer4): 9472 channels. The head's
    `in_channels` is `out_channels` (derived from the stages' channels, `head_defaults`).

    forward(batch): batch["simpleVQA"] [B, 3, T, H, W] frames, batch["feat"] [B, T, 2304]
    SlowFast features (slow 2048 ‖ fast 256: motion_channels; not read when 0) -> [B, T, out_channels].
    Native-size clips of different sizes come padded to one size, with batch["simpleVQA_frame_size"]
    [B, 2] their (H, W) (datasets.collate): each is cut back to its size before the trunk.
    """

    head_type = "SimpleVQAHead"
    head_defaults = {"in_channels": 9472, "hidden_channels": 128}
    arg_ranges = {"motion_channels": (0, None)}  # checked by constructor_args (kvq.core.config)

    def __init__(self, pretrained: bool = True, pretrained_path: Optional[str | os.PathLike] = None,
                 spatial: str = REFERENCE, stages: Optional[Sequence[int]] = None,
                 weights: Optional[str] = None, motion_channels: int = 2304) -> None:
        """spatial: "resnet50" or a timm model name; stages: which stages are pooled (resnet50:
        layer numbers 1-4, default [2, 3, 4]; timm: indices into the model's feature_info, default
        all); weights: the weight record of the file (default "resnet50_imagenet" for resnet50;
        required for a timm model when pretrained); pretrained_path: that file (default: looked
        for as kvq.core.weights does); motion_channels: channels of the dataset's SlowFast features
        (feature_type SlowFast 2304, Slow 2048, Fast 256; 0: none are read)."""
        super().__init__()
        self.spatial_name = spatial
        self.record = spatial_record(spatial, weights)
        if motion_channels < 0:
            raise ValueError(f"motion_channels must be >= 0 (0: no SlowFast features), got {motion_channels}")
        self.motion_channels = motion_channels
        if spatial == REFERENCE:
            self.stages = list(stages or (2, 3, 4))
            if not self.stages or any(s not in (1, 2, 3, 4) for s in self.stages):
                raise ValueError(f"stages of resnet50 are layer numbers 1-4, got {list(stages or [])}")
            trunk = torchvision.models.resnet50(weights=None)
            self.conv1 = trunk.conv1
            self.bn1 = trunk.bn1
            self.relu = trunk.relu
            self.maxpool = trunk.maxpool
            self.layer1 = trunk.layer1
            self.layer2 = trunk.layer2
            self.layer3 = trunk.layer3
            self.layer4 = trunk.layer4
            channels = [RESNET50_CHANNELS[s - 1] for s in self.stages]
        else:
            import timm

            if not timm.is_model(spatial):
                raise ValueError(f"spatial '{spatial}' is neither 'resnet50' nor a timm model"
                                 f"{did_you_mean(spatial, timm.list_models())}")
            self.spatial = timm.create_model(spatial, pretrained=False)
            info = self.spatial.feature_info
            self.stages = list(range(len(info))) if stages is None else list(stages)
            if not self.stages or any(not 0 <= s < len(info) for s in self.stages):
                raise ValueError(f"stages of {spatial} are indices 0-{len(info) - 1} of its feature_info "
                                 f"({[f['module'] for f in info]}), got {list(stages or [])}")
            channels = [info[s]["num_chs"] for s in self.stages]
        self.out_channels = 2 * sum(channels) + motion_channels
        self.head_defaults = {**type(self).head_defaults, "in_channels": self.out_channels}
        if pretrained:
            if self.record is None:
                raise ValueError(f"spatial '{spatial}' with pretrained: true needs `weights`, a weight record "
                                 f"(kvq/core/weights.py: {', '.join(WEIGHTS)}), or pretrained: false")
            if spatial == REFERENCE:
                self.load_imagenet(pretrained_path)
            else:
                self.load_timm(pretrained_path)
        if spatial != REFERENCE:
            # the unused tail (final norm, pooling, classifier) is dropped after loading the file
            self.spatial.prune_intermediate_layers(self.stages, prune_norm=True, prune_head=True)

    def train(self, mode: bool = True) -> "SimpleVQABackbone":
        """A frozen timm spatial branch (freeze_backbone) stays in eval mode: its BatchNorm uses the
        weight file's statistics, so the head trains on the features it is scored on."""
        super().train(mode)
        if self.spatial_name != REFERENCE and not any(p.requires_grad for p in self.spatial.parameters()):
            self.spatial.eval()
        return self

    @classmethod
    def pretrained_files(cls, kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """(weight record, path from the config or None) that building with `kwargs` loads."""
        if not kwargs.get("pretrained", True):
            return []
        record = spatial_record(kwargs.get("spatial") or REFERENCE, kwargs.get("weights"))
        return [(record, kwargs.get("pretrained_path"))] if record else []

    def load_timm(self, path: Optional[str | os.PathLike] = None) -> None:
        """Load the record's file into the (unpruned) timm model: by key ("timm" layout), or by
        position ("by_position", every shape checked), strictly: a file of another network fails."""
        record = WEIGHTS[self.record]
        file = resolve_weight(self.record, path)
        state = extract_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        if record.layout == "by_position":
            state = map_by_position(state, self.spatial.state_dict(), file)
        result = self.spatial.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(f"{file} is not a {self.spatial_name} state dict: missing {result.missing_keys[:5]}, "
                               f"unexpected {result.unexpected_keys[:5]}")
        log.info("simpleVQA backbone: %s weights (%s) loaded from %s", self.spatial_name, self.record, file)

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

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[N, 3, H, W] frames -> the chosen stages' [N, C_s, H_s, W_s] feature maps."""
        if self.spatial_name != REFERENCE:
            return self.spatial.forward_intermediates(x, indices=self.stages, intermediates_only=True)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for number, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            if number > max(self.stages):
                break
            x = layer(x)
            if number in self.stages:
                maps.append(x)
        return maps

    def spatial_features(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] frames -> [B*T, C] mean + std pooled maps of the chosen stages."""
        b, c, t, h, w = video.shape
        x = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        return torch.cat([mean_std_pool(m) for m in self.stage_maps(x)], dim=1)

    def spatial_features_by_size(self, video: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """`spatial_features` of clips padded to one size (datasets.collate): each clip cut back
        to its (H, W) of `sizes` [B, 2], the clips of one size run together, the features put
        back in batch order: [B*T, C], as each clip gives alone."""
        t = video.shape[2]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (h, w) in enumerate(sizes.tolist()):
            groups.setdefault((h, w), []).append(i)
        order, parts = [], []
        for (h, w), index in groups.items():
            parts.append(self.spatial_features(video[index, :, :, :h, :w]).unflatten(0, (len(index), t)))
            order += index
        inverse = torch.argsort(torch.tensor(order, device=video.device))
        return torch.cat(parts)[inverse].flatten(0, 1)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        video = batch["simpleVQA"]
        b, t = video.shape[0], video.shape[2]
        if FRAME_SIZE_KEY in batch:
            pooled = [self.spatial_features_by_size(video, batch[FRAME_SIZE_KEY])]
        else:
            pooled = [self.spatial_features(video)]
        if self.motion_channels:
            if "feat" not in batch:
                raise ValueError("the simpleVQA backbone (motion_channels > 0) needs SlowFast features: set "
                                 "the dataset's data_prefix_3D, or motion_channels: 0")
            motion = batch["feat"].to(device=video.device, dtype=video.dtype)
            if motion.shape != (b, t, self.motion_channels):
                raise ValueError(f"batch['feat'] {tuple(motion.shape)} does not match {t} frames of "
                                 f"batch['simpleVQA'] {tuple(video.shape)}")
            pooled.append(motion.reshape(b * t, -1))
        return torch.cat(pooled, dim=1).view(b, t, -1)
