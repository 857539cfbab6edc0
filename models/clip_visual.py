"""CLIP ViT-B/16 visual tower with CLS-token adapters (KSVQE's `CLIP_tool`).

The tower is open_clip's `VisionTransformer` built with QuickGELU, i.e. OpenAI's network with
OpenAI's parameter names (`conv1`, `class_embedding`, `positional_embedding`, `ln_pre`,
`transformer.resblocks.N.{ln_1,attn,ln_2,mlp.c_fc,mlp.c_proj}`, `ln_post`, `proj`). It is frozen;
only the CLS adapters `adapter_layer.{0..}` train. Unlike CLIP's own forward, the output is
taken before `ln_post`/`proj` (those two stay in the state dict, unused, as in the reference).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from kvq.core.checkpoint import extract_state_dict
from kvq.core.weights import resolve_weight

log = logging.getLogger(__name__)


def resize_pos_embed(pos_embed: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]) -> torch.Tensor:
    """[1 + Hs*Ws, C] -> [1 + Hd*Wd, C]: the patch grid part resized bicubically (no antialias,
    align_corners=False), the class position kept."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    cls_pos, grid = pos_embed[:1], pos_embed[1:]
    grid = grid.T.reshape(1, -1, *src_grid)
    grid = F.interpolate(grid, size=dst_grid, mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, grid.reshape(grid.shape[1], -1).T], dim=0)


def cls_adapter(width: int) -> nn.Sequential:
    """Linear(C, C/4) -> ReLU -> Linear(C/4, C) -> ReLU (keys `0.*`, `2.*`)."""
    return nn.Sequential(nn.Linear(width, width // 4), nn.ReLU(), nn.Linear(width // 4, width), nn.ReLU())


def read_openai_visual_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The `visual.*` tensors (prefix stripped, as float32) of an OpenAI CLIP file.

    Accepts OpenAI's TorchScript archive (ViT-B-16.pt) or a plain state dict of the whole CLIP.
    """
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is OpenAI's file format
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError as jit_error:
        try:
            state = extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # torch.load raises several kinds for a file that is not a checkpoint
            raise ValueError(f"{path}: neither OpenAI's TorchScript CLIP archive ({jit_error}) nor a "
                             f"state dict ({e})") from e
    visual = {k[len("visual."):]: v.float() for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise ValueError(f"{path} holds no 'visual.*' tensors: not an OpenAI CLIP checkpoint")
    return visual


class ClipVisualAdapter(nn.Module):
    """Frozen CLIP ViT with CLS adapters after blocks >= `clip_location` (reference
    CLIP_extractor_addadapter_cls).

    forward(images [N, 3, H, W]) -> (cls_attn [N, L], cls_token [N, 1, C], patch_tokens [N, L, C]),
    L = (H/16)(W/16): cls_attn is the cosine similarity of the final CLS token to each patch
    token. The positional embedding is resized bicubically to the input grid.
    """

    def __init__(self, clip_location: int = 8, cls_use: bool = True, *, pretrained: bool = True,
                 path: Optional[str | os.PathLike] = None, checkpoint: bool = True, image_size: int = 224,
                 patch_size: int = 16, width: int = 768, layers: int = 12, heads: int = 12,
                 output_dim: int = 512) -> None:
        super().__init__()
        weight_file = resolve_weight("clip_vit_b16", path) if pretrained else None
        if not 0 <= clip_location <= layers:
            raise ValueError(f"CLIP_location must lie in [0, {layers}], got {clip_location}")
        self.clip_location = clip_location
        self.cls_use = cls_use
        self.checkpoint = checkpoint
        from open_clip.transformer import QuickGELU, VisionTransformer  # open_clip (timm...) only when built

        self.visual = VisionTransformer(image_size=image_size, patch_size=patch_size, width=width, layers=layers,
                                        heads=heads, mlp_ratio=4.0, output_dim=output_dim, act_layer=QuickGELU)
        if cls_use:
            self.adapter_layer = nn.ModuleList([cls_adapter(width) for _ in range(layers - clip_location)])
        if weight_file is not None:
            self.load_openai(weight_file)
        self.visual.requires_grad_(False)

    def load_openai(self, path: str | Path) -> None:
        """Load OpenAI CLIP weights (JIT archive or state dict) into the tower, strictly."""
        self.visual.load_state_dict(read_openai_visual_state(path), strict=True)
        log.info("loaded CLIP visual weights from %s", path)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        block = self.visual.transformer.resblocks[i]
        if self.checkpoint and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.visual
        x = v.conv1(images)  # [N, C, h, w]
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)  # [N, h*w, C]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + resize_pos_embed(v.positional_embedding.to(x.dtype), v.grid_size, grid)
        x = v.ln_pre(x)
        for i in range(len(v.transformer.resblocks)):
            x = self._block(i, x)
            if self.cls_use and i >= self.clip_location:
                cls = x[:, :1]
                cls = 0.5 * self.adapter_layer[i - self.clip_location](cls) + 0.5 * cls
                x = torch.cat([cls, x[:, 1:]], dim=1)
        cls, patches = x[:, :1], x[:, 1:]
        return torch.cosine_similarity(cls, patches, dim=-1), cls, patches
