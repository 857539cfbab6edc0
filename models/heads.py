"""Regression heads (parameter names as in the reference head.py). Heads compute in float32 even
under bf16/fp16 autocast: their long dot products decide the ranking, and are cheap."""
from __future__ import annotations

import torch
from torch import nn

from models.registry import HEADS


@HEADS.register()
class VQAHead(nn.Module):
    """Dropout -> Conv3d(C, hidden, 1) -> GELU -> Dropout -> Conv3d(hidden, 1, 1) -> mean.

    Input [B, C, T, H, W] -> score [B, 1].
    """

    # checked by kvq.core.config.constructor_args
    arg_ranges = {"in_channels": (1, None), "hidden_channels": (1, None), "dropout_ratio": (0, 1)}

    def __init__(self, in_channels: int = 768, hidden_channels: int = 64, dropout_ratio: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout_ratio)
        self.fc_hid = nn.Conv3d(in_channels, hidden_channels, (1, 1, 1))
        self.fc_last = nn.Conv3d(hidden_channels, 1, (1, 1, 1))
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # float32 under bf16/fp16 autocast too
            x = self.fc_last(self.dropout(self.gelu(self.fc_hid(self.dropout(x.float())))))
            return x.mean((-3, -2, -1))


@HEADS.register()
class SimpleVQAHead(nn.Module):
    """Linear(C, hidden) -> Linear(hidden, 1) per frame, then the mean over frames.

    Input [B, T, C] -> score [B, 1]. standardize: inputs are first standardised per channel with
    the train features' mean and std (buffers `feature_mean`, `feature_std` [C], so stored in the
    checkpoint), set by `fit_standardization` (the trainer does it under cache_features).
    """

    arg_ranges = {"in_channels": (1, None), "hidden_channels": (1, None)}  # checked by constructor_args

    def __init__(self, in_channels: int = 9472, hidden_channels: int = 128, standardize: bool = False) -> None:
        super().__init__()
        self.standardize = standardize
        if standardize:
            self.register_buffer("feature_mean", torch.zeros(in_channels))
            self.register_buffer("feature_std", torch.ones(in_channels))
        self.quality = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.Linear(hidden_channels, 1))

    def fit_standardization(self, features: torch.Tensor) -> None:
        """Set the standardisation from train features [..., C] (every frame of every video)."""
        flat = features.reshape(-1, features.shape[-1]).float()
        self.feature_mean.copy_(flat.mean(dim=0))
        self.feature_std.copy_(flat.std(dim=0).clamp_min(1e-6))  # a constant channel stays finite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # float32 under bf16/fp16 autocast too
            x = x.float()
            if self.standardize:
                x = (x - self.feature_mean) / self.feature_std
            return self.quality(x).mean(dim=1)

