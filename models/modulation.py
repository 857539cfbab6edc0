"""KSVQE's content- and distortion-aware modulation parts (reference KSVQE_model.py).

- `adapter_mlp`: the token adapters (semantic 768 -> C, distortion 128 -> C, CONTRIQUE 128 -> 128).
- `CrossAttention` (reference crossattention1): multi-head, logits scaled by 1/sqrt(C) (the full
  width, not the head width) and no output projection, exactly as the published model.
- `TemporalSelfAttention` (reference Attention): standard multi-head self-attention.
- `SemanticModulation` (reference Semantic_Transformation2): spatial gamma/beta maps.
- `DistortionModulation` (reference Dist_Transformation3): channel gamma/beta from the std/mean
  over (T, H, W).
- `distortion_contrastive_loss`: supervised patch-level contrastive loss on distortion tokens.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def adapter_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear(in, hidden) -> ReLU -> Linear(hidden, out) -> ReLU (keys `0.*`, `2.*`)."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim), nn.ReLU())


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, C] -> [B, heads, N, C / heads] (heads take consecutive channel blocks)."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, d] -> [B, N, heads * d]."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class CrossAttention(nn.Module):
    """forward(query [B, Nq, C], context [B, Nk, C]) -> [B, Nq, C].

    softmax(fc_q(q) fc_k(ctx)^T / sqrt(C)) fc_v(ctx) per head; no output projection.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.num_heads = num_heads
        self.fc_q = nn.Linear(dim, dim)
        self.fc_k = nn.Linear(dim, dim)
        self.fc_v = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.fc_q(query), self.num_heads)
        k = _split_heads(self.fc_k(context), self.num_heads)
        v = _split_heads(self.fc_v(context), self.num_heads)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.dim), dim=-1)
        return _merge_heads(attn @ v)


class TemporalSelfAttention(nn.Module):
    """forward(x [B, N, C]) -> [B, N, C]: multi-head self-attention, scale (C / heads)^-0.5,
    qkv without bias, output Linear (+ Dropout)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.to_out(_merge_heads(attn @ v))


class SemanticModulation(nn.Module):
    """forward(cond [N, C, H, W], x [N, C, H, W]) -> sigmoid(conv_gama(cond)) * x + conv_beta(cond).

    gamma and beta are single-channel 1x1-conv maps (spatial modulation).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_gama = nn.Conv2d(channels, 1, 1)
        self.conv_beta = nn.Conv2d(channels, 1, 1)

    def forward(self, cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv_gama(cond)) * x + self.conv_beta(cond)


class DistortionModulation(nn.Module):
    """forward(cond [B, C, T, H, W], x [B, N, C]) -> gamma * x + beta, per channel:
    gamma = sigmoid(get_gamma(std of cond over T, H, W)) (unbiased std), beta = get_beta(mean)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.get_gamma = nn.Linear(channels, channels)
        self.get_beta = nn.Linear(channels, channels)

    def forward(self, cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        flat = cond.flatten(2)  # [B, C, THW]
        gamma = torch.sigmoid(self.get_gamma(flat.std(dim=2)))
        beta = self.get_beta(flat.mean(dim=2))
        return gamma.unsqueeze(1) * x + beta.unsqueeze(1)


def distortion_contrastive_loss(tokens: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                                anchors: Optional[range] = None) -> torch.Tensor:
    """Supervised contrastive loss over all distortion tokens of a batch (reference
    distortion_contrastive_supervised).

    tokens [B, T, G, D], labels [B] (distortion class per video). With z the L2-normalised
    tokens (N = B*T*G rows) and sim = z z^T / temperature, the positive weight of tokens r, s
    (r != s) is the number of batch videos whose label equals both videos' labels, i.e.
    (L L^T)[v(r), v(s)] with L[i, j] = [label_i == label_j] (count-weighted, not binary, as
    the published model). loss = mean_r [logsumexp_{s != r} sim_rs - sum_s P_rs sim_rs / sum_s P_rs].

    anchors: the videos whose tokens are the rows r of the mean (default: all B); the others
    still count as positives and negatives (DDP: one rank's videos against the global batch).
    """
    b, t, g, d = tokens.shape
    k = t * g
    anchors = anchors if anchors is not None else range(b)
    z = F.normalize(tokens.reshape(b * k, d), dim=1)
    rows = torch.arange(anchors.start * k, anchors.stop * k, device=z.device)
    sim = z[rows] @ z.T / temperature
    labels = torch.as_tensor(labels, device=z.device).reshape(b)
    same = (labels[:, None] == labels[None, :]).to(z.dtype)
    video = torch.arange(b, device=z.device).repeat_interleave(k)
    positive = (same @ same.T)[video[rows]][:, video]
    eye = rows[:, None] == torch.arange(b * k, device=z.device)[None, :]
    positive = positive.masked_fill(eye, 0.0)
    log_denominator = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1)
    return (log_denominator - (sim * positive).sum(dim=1) / positive.sum(dim=1)).mean()
