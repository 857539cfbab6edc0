"""Video Swin Transformer 3D building blocks with FAST-VQA's gated relative position bias (GRPB):
window partitioning, shifted-window masks, GRPB gates, window attention, blocks, stages
(`BasicLayer`) and the patch embedding. The network assembled from them, and its weight loading,
is models/swin3d_backbone.py.

Numerically the reference's (models/backbones/swin_backbone.py of
lixinustc/KVQ-Challenge-CVPR-NTIRE2024, itself FAST-VQA's), with the same parameter names.
Stages with `frag_biases` true hold a second table, `fragment_position_bias_table`: the relative
bias becomes `rel * g + frag * (1 - g)`, where g[i, j] is the L1 distance (integer, not clipped)
between the fragment coordinates of tokens i and j; the coordinates come from a (1, wh, ww) grid
nearest-resized onto the padded token grid.

One deliberate difference from the reference: when a window is clamped in H or W (token grid
smaller than the window), the relative-position index is taken for the clamped (d, h, w)
window; the reference takes the first N rows/columns of the full index, which names the
wrong table entries in that case. Both agree whenever only T is clamped (every published
input size: 32x224x224 / 16x288x288 FAST-VQA, 224x224 KSVQE).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from torchvision.ops import StochasticDepth

Size3 = tuple[int, int, int]


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """[B, D, H, W, C] -> [B * nW, wd * wh * ww, C] (windows in D, H, W raster order)."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).contiguous().view(-1, wd * wh * ww, c)


def window_reverse(windows: torch.Tensor, window: Size3, b: int, d: int, h: int, w: int) -> torch.Tensor:
    """[B * nW, wd, wh, ww, C] -> [B, D, H, W, C]; inverse of `window_partition`."""
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).contiguous().view(b, d, h, w, -1)


def clamp_window(size: Sequence[int], window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Window and shift used on a token grid of `size` (D, H, W).

    A dimension not larger than the window gets one window covering it, and no shift.
    """
    use_window, use_shift = list(window), list(shift)
    for i, n in enumerate(size):
        if n <= window[i]:
            use_window[i] = n
            use_shift[i] = 0
    return tuple(use_window), tuple(use_shift)


def _shift_regions(n: int, window: int, shift: int) -> torch.Tensor:
    """Region label (0, 1, 2) of each of `n` positions after a cyclic shift by `shift`."""
    labels = torch.full((n,), 2)
    if shift > 0:
        labels[: n - window] = 0
        labels[n - window: n - shift] = 1
    return labels


@lru_cache(maxsize=64)
def shifted_window_mask(padded: Size3, window: Size3, shift: Size3, device: torch.device) -> torch.Tensor:
    """Attention mask of the shifted windows: [nW, N, N], 0 within a region, -100 across.

    Cached; built outside inference mode so that a later training step may use it.
    """
    with torch.inference_mode(False):
        d, h, w = (_shift_regions(n, wn, s) for n, wn, s in zip(padded, window, shift))
        regions = (d[:, None, None] * 9 + h[None, :, None] * 3 + w[None, None, :]).float()
        regions = window_partition(regions[None, ..., None].to(device), window).squeeze(-1)
        diff = regions.unsqueeze(1) - regions.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


@lru_cache(maxsize=64)
def fragment_gate(padded: Size3, window: Size3, shift: Size3, device: torch.device) -> torch.Tensor:
    """GRPB gate [nW, N, N]: L1 distance between the fragment coordinates of two tokens.

    Fragment coordinates: the (1, wh, ww) grid nearest-resized to the padded token grid,
    rolled by the block's shift like the tokens. Cached, and built outside inference mode.
    """
    with torch.inference_mode(False):
        grid = torch.meshgrid(torch.arange(1), torch.arange(window[1]), torch.arange(window[2]), indexing="ij")
        grid = torch.stack(grid).float()[None].to(device)  # [1, 3, 1, wh, ww]
        coords = F.interpolate(grid, size=padded).long().permute(0, 2, 3, 4, 1)  # [1, Dp, Hp, Wp, 3]
        coords = torch.roll(coords, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        coords = window_partition(coords, window)  # [nW, N, 3]
        return (coords[:, None, :] - coords[:, :, None]).abs().sum(-1).float()


def relative_position_index(window: Size3) -> torch.Tensor:
    """[N, N] index into the (2wd-1)(2wh-1)(2ww-1) relative bias table, N = wd * wh * ww."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    for i, n in enumerate(window):
        rel[:, :, i] += n - 1
    rel[:, :, 0] *= (2 * window[1] - 1) * (2 * window[2] - 1)
    rel[:, :, 1] *= 2 * window[2] - 1
    return rel.sum(-1)


class Mlp(nn.Module):
    """Linear -> GELU -> Dropout -> Linear -> Dropout on [..., C]."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with relative (and optional GRPB) bias."""

    def __init__(self, dim: int, window_size: Size3, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 frag_bias: bool = False) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        table_size = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) * (2 * window_size[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_size, num_heads))
        if frag_bias:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros(table_size, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    @property
    def frag_bias(self) -> bool:
        return hasattr(self, "fragment_position_bias_table")

    def _bias(self, table: torch.Tensor, window: Size3) -> torch.Tensor:
        """Bias of the (possibly clamped) `window` from `table`: [nH, N, N]."""
        d, h, w = window
        n = d * h * w
        index = self.relative_position_index.view(*self.window_size, *self.window_size)[:d, :h, :w, :d, :h, :w]
        return table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, window: Size3, mask: Optional[torch.Tensor] = None,
                gate: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B * nW, N, C] -> [B * nW, N, C]; mask / gate [nW, N, N] or None.

        softmax(q k^T * scale + bias + mask) v through F.scaled_dot_product_attention, the
        relative (GRPB) bias and the shift mask summed into one additive float mask
        [B * nW or 1, nH, N, N] (under autocast it and the scores are in the autocast dtype)."""
        bn, n, c = x.shape
        qkv = self.qkv(x).reshape(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B * nW, nH, N, C / nH]

        bias = self._bias(self.relative_position_bias_table, window).unsqueeze(0)  # [1, nH, N, N]
        if gate is not None:
            gate = gate.unsqueeze(1)  # [nW, 1, N, N]
            frag = self._bias(self.fragment_position_bias_table, window)
            bias = bias * gate + frag * (1 - gate)  # [nW, nH, N, N]
        if mask is not None:
            bias = bias + mask.unsqueeze(1)  # [nW, nH, N, N]
        nw = bias.shape[0]
        if nw > 1:  # window w of every video: [nW, ...] -> [B * nW, ...] (a view for B = 1)
            bias = bias.unsqueeze(0).expand(bn // nw, -1, -1, -1, -1).reshape(bn, self.num_heads, n, n)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale,
                                           dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(bn, n, c)))


class SwinTransformerBlock3D(nn.Module):
    """(Shifted-)window attention + MLP, both pre-norm residual, on [B, D, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, window_size: Size3, shift_size: Size3 = (0, 0, 0),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 frag_bias: bool = False, use_checkpoint: bool = False) -> None:
        super().__init__()
        if not all(0 <= s < w for s, w in zip(shift_size, window_size)):
            raise ValueError(f"shift {shift_size} must lie in [0, window {window_size})")
        self.window_size = window_size
        self.shift_size = shift_size
        self.use_checkpoint = use_checkpoint
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop, frag_bias)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def _attention(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, d, h, w, c = x.shape
        window, shift = clamp_window((d, h, w), self.window_size, self.shift_size)
        x = self.norm1(x)
        pads = [(wn - n % wn) % wn for n, wn in zip((d, h, w), window)]
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        padded = tuple(x.shape[1:4])
        shifted = any(s > 0 for s in shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        gate = fragment_gate(padded, window, shift, x.device) if self.attn.frag_bias else None
        windows = self.attn(window_partition(x, window), window, mask if shifted else None, gate)
        x = window_reverse(windows.view(-1, *window, c), window, b, *padded)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        if any(pads):
            x = x[:, :d, :h, :w, :].contiguous()
        return x

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x [B, D, H, W, C] -> same; `mask`: the stage's shifted-window mask [nW, N, N]."""
        checkpointed = self.use_checkpoint and self.training and torch.is_grad_enabled()
        if checkpointed:
            x = x + self.drop_path(torch.utils.checkpoint.checkpoint(self._attention, x, mask, use_reentrant=False))
            return x + torch.utils.checkpoint.checkpoint(self._feed_forward, x, use_reentrant=False)
        x = x + self.drop_path(self._attention(x, mask))
        return x + self._feed_forward(x)


class PatchMerging(nn.Module):
    """2x2 spatial merge: [B, D, H, W, C] -> LayerNorm(4C) -> Linear -> [B, D, H/2, W/2, 2C]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: `depth` blocks (shifted on odd ones), then optional PatchMerging.

    forward: [B, C, D, H, W] -> [B, C', D, H', W'] (C' = 2C, H' = ceil(H/2) with downsampling).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Size3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: Sequence[float] = (), downsample: bool = False,
                 frag_bias: bool = False, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = tuple(w // 2 for w in window_size)
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList([
            SwinTransformerBlock3D(dim, num_heads, window_size, (0, 0, 0) if i % 2 == 0 else self.shift_size,
                                   mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path[i], frag_bias,
                                   use_checkpoint)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, h, w = x.shape[2:]
        window, shift = clamp_window((d, h, w), self.window_size, self.shift_size)
        padded = tuple(-(-n // wn) * wn for n, wn in zip((d, h, w), window))
        mask = shifted_window_mask(padded, window, shift, x.device)
        x = x.permute(0, 2, 3, 4, 1)
        for block in self.blocks:
            x = block(x, mask)
        if self.downsample is not None:
            x = self.downsample(x)
        return x.permute(0, 4, 1, 2, 3)


class PatchEmbed3D(nn.Module):
    """[B, 3, T, H, W] (zero-padded to multiples of the patch) -> Conv3d -> LayerNorm -> [B, C, T/2, H/4, W/4]."""

    def __init__(self, patch_size: Size3 = (2, 4, 4), in_chans: int = 3, embed_dim: int = 96,
                 patch_norm: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pd, ph, pw = ((p - n % p) % p for n, p in zip(x.shape[2:], self.patch_size))
        if pd or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pd))
        x = self.proj(x)
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return x
