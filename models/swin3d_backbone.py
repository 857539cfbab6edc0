"""Video Swin Transformer 3D with FAST-VQA's gated relative position bias (GRPB): the registered
backbones swin_tiny_grpb (Swin-T with GRPB), swin_tiny_grpb_m, swin_tiny, swin_small, and the
Kinetics-400 weight loading. The blocks are models/swin3d.py.

Numerically the reference `SwinTransformer3D` (models/backbones/swin_backbone.py of
lixinustc/KVQ-Challenge-CVPR-NTIRE2024, itself FAST-VQA's), with the same parameter names,
so checkpoints trained with the reference load unchanged. The Swin inside the reference KSVQE
(KSVQE_model.py) is the same network: its extra `fragment_size` layer argument is unused there.

Architecture (Swin-T defaults): PatchEmbed3D Conv3d(3, 96, (2, 4, 4)) + LayerNorm; four stages
of depths [2, 2, 6, 2], heads [3, 6, 12, 24], window (8, 7, 7) clamped to the token grid,
shifted windows (shift = window // 2) on odd blocks, PatchMerging after stages 0-2, final
LayerNorm; stages with `frag_biases` true use GRPB.

Running the network stage by stage (what KSVQE does, with modulation between stages)::

    x = swin.patch_embed(video)      # [B, 3, T, H, W] -> [B, 96, T/2, H/4, W/4]
    x = swin.pos_drop(x)
    for layer in swin.layers:        # each: [B, C, D, H, W] -> next stage's [B, C', D, H', W']
        x = layer(x)                 # window clamping, shift masks and GRPB gates are internal
        ...                          # (modulate x here)
    x = swin.apply_norm(x)           # final LayerNorm over channels, [B, 768, T/2, H/32, W/32]

A subclass (e.g. KSVQE) may call `SwinTransformer3D.__init__(self, pretrained=False, ...)`,
add its own modules, and then call `load_kinetics_weights(self, path)`: only the Swin keys
(`patch_embed.*`, `layers.*`, `norm.*`) are read and reported.
"""
from __future__ import annotations

import logging
from functools import partialmethod
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from kvq.core.weights import resolve_weight
from models.registry import BACKBONES
from models.swin3d import BasicLayer, PatchEmbed3D, Size3

log = logging.getLogger(__name__)

SWIN_PREFIXES = ("patch_embed.", "layers.", "norm.")


def _per_stage_windows(window_size: Any, num_stages: int) -> list[Size3]:
    """One (wd, wh, ww) or one triple per stage -> a triple per stage."""
    if isinstance(window_size[0], Sequence):
        if len(window_size) != num_stages:
            raise ValueError(f"window_size has {len(window_size)} entries for {num_stages} stages")
        return [tuple(int(v) for v in w) for w in window_size]
    return [tuple(int(v) for v in window_size)] * num_stages


def load_kinetics_weights(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load an mmaction Video Swin checkpoint into the Swin part of `model` (the reference load_swin).

    Reads `['state_dict']`, keeps keys under `backbone.` (prefix stripped), copies each
    `relative_position_bias_table` into the model's `fragment_position_bias_table` of the same
    block, skips (and logs) shape mismatches. Returns (missing Swin keys, skipped keys).
    """
    obj = torch.load(path, map_location="cpu", weights_only=False)
    source = obj["state_dict"] if isinstance(obj, Mapping) and "state_dict" in obj else obj
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if not key.startswith("backbone."):
            continue
        key = key[len("backbone."):]
        state[key] = value
        forked = key.replace("relative_position_bias_table", "fragment_position_bias_table")
        if forked != key and forked in own:
            state[forked] = value
    skipped = []
    for key in list(state):
        if key not in own:
            skipped.append(key)
            log.warning("Kinetics checkpoint key %s has no counterpart in the model", key)
            del state[key]
        elif tuple(state[key].shape) != tuple(own[key].shape):
            skipped.append(key)
            log.warning("Kinetics checkpoint key %s skipped: shape %s vs model %s", key,
                        tuple(state[key].shape), tuple(own[key].shape))
            del state[key]
    model.load_state_dict(state, strict=False)
    missing = [k for k in own if k.startswith(SWIN_PREFIXES) and k not in state]
    if missing:
        log.warning("Swin keys not in the Kinetics checkpoint, left as initialised (%d): %s", len(missing),
                    ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    log.info("loaded Kinetics-400 Video Swin weights from %s (%d tensors)", path, len(state))
    return missing, skipped


@BACKBONES.register("swin_tiny_grpb")
class SwinTransformer3D(nn.Module):
    """Video Swin-T 3D with GRPB (FAST-VQA): batch["technical"] [B, 3, T, H, W] -> [B, 768, T/2, H/32, W/32].

    `pretrained` loads the Kinetics-400 Video Swin-T checkpoint (record "swin_tiny_k400", or
    `pretrained_path`); a missing file raises MissingWeightsError. `checkpoint` turns on
    gradient checkpointing of every block (training only). `frozen_stages` k >= 0 freezes the
    patch embedding and stages 0..k-1 (kept in eval mode).
    """

    head_type = "VQAHead"
    head_defaults = {"in_channels": 768, "hidden_channels": 64}
    weight_args = {"swin_tiny_k400": "pretrained_path"}  # weight record -> argument giving its path

    def __init__(self, *, pretrained: bool = True, pretrained_path: Optional[str] = None,
                 patch_size: Sequence[int] = (2, 4, 4), in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: Sequence[Any] = (8, 7, 7), mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, patch_norm: bool = True, frozen_stages: int = -1,
                 checkpoint: bool = True, frag_biases: Sequence[bool] = (True, True, True, False)) -> None:
        super().__init__()
        weight_path = resolve_weight("swin_tiny_k400", pretrained_path) if pretrained else None
        num_stages = len(depths)
        if not len(num_heads) == len(frag_biases) == num_stages:
            raise ValueError(f"depths, num_heads and frag_biases need {num_stages} entries each")
        windows = _per_stage_windows(window_size, num_stages)
        self.frozen_stages = frozen_stages
        self.patch_embed = PatchEmbed3D(tuple(patch_size), in_chans, embed_dim, patch_norm)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.ModuleList([
            BasicLayer(embed_dim * 2 ** i, depths[i], num_heads[i], windows[i], mlp_ratio, qkv_bias, qk_scale,
                       drop_rate, attn_drop_rate, dpr[sum(depths[:i]): sum(depths[: i + 1])],
                       downsample=i < num_stages - 1, frag_bias=bool(frag_biases[i]), use_checkpoint=checkpoint)
            for i in range(num_stages)
        ])
        self.num_features = embed_dim * 2 ** (num_stages - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self._freeze_stages()
        self.apply(self._init_weights)
        if weight_path is not None:
            load_kinetics_weights(self, weight_path)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            self.patch_embed.requires_grad_(False)
        if self.frozen_stages >= 1:
            self.pos_drop.eval()
            for layer in self.layers[: self.frozen_stages]:
                layer.eval()
                layer.requires_grad_(False)

    def train(self, mode: bool = True) -> "SwinTransformer3D":
        super().train(mode)
        self._freeze_stages()
        return self

    def apply_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm over channels: [B, C, D, H, W] -> same."""
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, 768, T/2, H/32, W/32]."""
        x = self.pos_drop(self.patch_embed(video))
        for layer in self.layers:
            x = layer(x.contiguous())
        return self.apply_norm(x)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """batch["technical"] [B, 3, T, H, W] -> features [B, 768, T/2, H/32, W/32]."""
        return self.forward_features(batch["technical"])


@BACKBONES.register("swin_tiny_grpb_m")
class SwinTinyGRPBM(SwinTransformer3D):
    """FAST-VQA-M: window (4, 4, 4), no fragment bias tables."""

    __init__ = partialmethod(SwinTransformer3D.__init__, window_size=(4, 4, 4), frag_biases=(False,) * 4)


@BACKBONES.register("swin_tiny")
class SwinTiny(SwinTransformer3D):
    """Plain Video Swin-T (the reference swin_3d_tiny): no fragment bias tables."""

    __init__ = partialmethod(SwinTransformer3D.__init__, frag_biases=(False,) * 4)


@BACKBONES.register("swin_small")
class SwinSmall(SwinTransformer3D):
    """Plain Video Swin-S (the reference swin_3d_small): depths [2, 2, 18, 2], no fragment tables.

    Like the reference, `pretrained` loads the Swin-T Kinetics checkpoint (stage-2 blocks 6-17
    stay initialised and are reported missing).
    """

    __init__ = partialmethod(SwinTransformer3D.__init__, depths=(2, 2, 18, 2), frag_biases=(False,) * 4)
