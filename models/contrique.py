"""CONTRIQUE distortion encoder (KSVQE's frozen `distortion_tool`).

CONTRIQUE (Madhusudana et al.) = torchvision ResNet-50 without avgpool/fc (`encoder.{0..7}`)
+ projector Linear(2048, 2048) -> BN -> ReLU -> Linear(2048, 128) -> BN (`projector.{0,1,3,4}`),
here applied to every 32x32 patch of a video. Weights: CONTRIQUE_checkpoint25.tar from the
CONTRIQUE release (record "contrique"), loaded strictly.

The encoder is frozen and always runs in eval mode (BatchNorm on its running statistics), also
while the surrounding model trains.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from kvq.core.checkpoint import extract_state_dict
from kvq.core.weights import resolve_weight

log = logging.getLogger(__name__)


class ContriqueEncoder(nn.Module):
    """forward(video [B, C, T, H, W]) -> distortion tokens [B, T, (H/32)(W/32), 128].

    Each 32x32 patch (ResNet-50's stride: one feature vector per patch) -> ResNet-50 -> [2048]
    -> L2-normalise -> projector -> [128].
    """

    patch_size = 32
    n_features = 2048

    def __init__(self, *, pretrained: bool = True, path: Optional[str | os.PathLike] = None,
                 projection_dim: int = 128) -> None:
        super().__init__()
        weight_file = resolve_weight("contrique", path) if pretrained else None
        resnet = torchvision.models.resnet50(weights=None)
        self.encoder = nn.Sequential(*list(resnet.children())[:-2])
        self.projector = nn.Sequential(
            nn.Linear(self.n_features, self.n_features, bias=False),
            nn.BatchNorm1d(self.n_features),
            nn.ReLU(),
            nn.Linear(self.n_features, projection_dim, bias=False),
            nn.BatchNorm1d(projection_dim),
        )
        if weight_file is not None:
            self.load_contrique(weight_file)
        self.requires_grad_(False)
        self.eval()

    def load_contrique(self, path: str | Path) -> None:
        """Strictly load a CONTRIQUE checkpoint (bare state dict, optionally nested/`module.`)."""
        state = extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.load_state_dict(state, strict=True)
        log.info("loaded CONTRIQUE weights from %s", path)

    def train(self, mode: bool = True) -> "ContriqueEncoder":
        """Frozen: stays in eval mode whatever `mode` is."""
        return super().train(False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        a = self.patch_size
        if h % a or w % a:
            raise ValueError(f"frame size {h}x{w} is not a multiple of the {a}-pixel patch")
        gh, gw = h // a, w // a
        patches = (video.permute(0, 2, 1, 3, 4)  # [B, T, C, H, W]
                   .reshape(b * t, c, gh, a, gw, a)
                   .permute(0, 2, 4, 1, 3, 5)
                   .reshape(b * t * gh * gw, c, a, a))
        feats = self.encoder(patches).reshape(-1, self.n_features)
        z = self.projector(F.normalize(feats, dim=1))
        return z.view(b, t, gh * gw, -1)
