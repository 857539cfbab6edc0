"""Quality-aware region selection (QRS) of KSVQE (reference RegionNet_CLIP, patchnet.py).

A fragment video [B, 3, T, H, W] is a grid of a x a mini-patches (a = 32, 9 x 9 for 288 px).
A CLIP score map per key frame (cosine of CLS to each patch token, 7 x 7) is nearest-resized to
that grid; every k x k window of mini-patches (k = 7, stride 1: 3 x 3 = 9 windows) scores the
mean of its map values, min-max normalised per key frame. One window is chosen per key frame
and cut out of every frame of that key frame's group -> [B, 3, T, k*a, k*a].

Choice of window:
- eval: the best window (any `sample_type` but "random");
- train "topkpertubation" (reference spelling): PerturbedTopK (k = 1, `num_samples` Gaussian
  perturbations with std `sigma`), whose custom gradient reaches the scores (and so the CLIP
  CLS adapters);
- train "gumbel": straight-through hard Gumbel-softmax over the window scores;
- "random" (train and eval): a uniformly random window.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kvq.core.registry import did_you_mean

SAMPLE_TYPES = ("topkpertubation", "gumbel", "random")


class PerturbedTopKFunction(torch.autograd.Function):
    """Differentiable top-k indicator by Gaussian perturbation (Berthet et al. 2020, as in the reference).

    forward(scores [N, D], k, num_samples, sigma) -> indicators [N, k, D]: the mean over
    `num_samples` perturbations s + sigma * z of the one-hot top-k indices (sorted by index).
    backward: d/ds_d = sum_k grad[n, k, d] * E[one_hot[n, :, k, d] * z[n, :, d]] / sigma, i.e. only
    the diagonal d indicator_d / d s_d of the perturbation Jacobian estimate, exactly as the
    reference (cross terms d indicator_d / d s_e, e != d, are not propagated).
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int, num_samples: int, sigma: float) -> torch.Tensor:
        n, d = scores.shape
        noise = torch.randn(n, num_samples, d, device=scores.device, dtype=scores.dtype)
        perturbed = scores[:, None, :] + sigma * noise  # [N, S, D]
        indices = torch.topk(perturbed, k=k, dim=-1, sorted=False).indices.sort(dim=-1).values  # [N, S, k]
        one_hot = F.one_hot(indices, num_classes=d).to(scores.dtype)  # [N, S, k, D]
        ctx.save_for_backward(one_hot, noise)
        ctx.sigma = sigma
        return one_hot.mean(dim=1)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        one_hot, noise = ctx.saved_tensors
        expected = torch.einsum("nskd,nsd->nkd", one_hot, noise) / one_hot.shape[1] / ctx.sigma
        return torch.einsum("nkd,nkd->nd", grad_output, expected), None, None, None


def perturbed_topk(scores: torch.Tensor, k: int, num_samples: int, sigma: float) -> torch.Tensor:
    """[N, D] -> [N, k, D] soft top-k indicators with a perturbation gradient (see PerturbedTopKFunction)."""
    return PerturbedTopKFunction.apply(scores, k, num_samples, sigma)


def min_max_norm(x: torch.Tensor) -> torch.Tensor:
    """(x - min) / (max - min + 1e-5) along the last dimension."""
    lo = x.min(dim=-1, keepdim=True).values
    hi = x.max(dim=-1, keepdim=True).values
    return (x - lo) / (hi - lo + 1e-5)


class RegionSelection(nn.Module):
    """forward(fragment [B, 3, T, H, W], score [B, K, L], group_id [T]) -> [B, 3, T, k*a, k*a].

    `score`: one L = g x g map per key frame (K key frames); `group_id[t]` is the key frame of
    frame t. Parameter-free; the gradient (train, not "random") flows to `score` only.
    """

    def __init__(self, window: int = 7, anchor_size: int = 32, stride: int = 1, num_samples: int = 1,
                 sample_type: str = "topkpertubation", sigma: float = 0.5) -> None:
        super().__init__()
        if sample_type == "multinomial":
            raise ValueError("sample_type 'multinomial' is broken in the reference KSVQE (it reads undefined "
                             f"names) and is not supported; use one of {', '.join(SAMPLE_TYPES)}")
        if sample_type not in SAMPLE_TYPES:
            raise ValueError(f"unknown sample_type '{sample_type}'{did_you_mean(sample_type, SAMPLE_TYPES)}; "
                             f"known: {', '.join(SAMPLE_TYPES)}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.window = window
        self.anchor_size = anchor_size
        self.stride = stride
        self.num_samples = num_samples
        self.sample_type = sample_type
        self.sigma = sigma

    def window_scores(self, score: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[N, L] map scores -> [N, R] min-max normalised mean score of each window (raster order)."""
        g = math.isqrt(score.shape[-1])
        if g * g != score.shape[-1]:
            raise ValueError(f"score map of {score.shape[-1]} values is not square")
        maps = score.reshape(-1, 1, g, g)
        if (g, g) != grid:
            maps = F.interpolate(maps, size=grid, mode="nearest")
        windows = F.unfold(maps, kernel_size=self.window, stride=self.stride)  # [N, k*k, R]
        return min_max_norm(windows.mean(dim=1))

    def forward(self, fragment: torch.Tensor, score: torch.Tensor, group_id: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = fragment.shape
        a, k, s = self.anchor_size, self.window, self.stride
        if h % a or w % a:
            raise ValueError(f"fragment size {h}x{w} is not a multiple of the {a}-pixel mini-patch")
        gh, gw = h // a, w // a
        if gh < k or gw < k:
            raise ValueError(f"fragment grid {gh}x{gw} is smaller than the {k}x{k} window")
        n_key = score.shape[1]
        scores = self.window_scores(score.reshape(b * n_key, -1), (gh, gw))  # [B*K, R]
        n_cols = (gw - k) // s + 1
        group_id = group_id.to(fragment.device)

        if self.sample_type == "random":  # in eval a fixed draw, so that scoring is repeatable
            draw = None if self.training else torch.Generator().manual_seed(0)
            chosen = torch.randint(scores.shape[1], (b, n_key), generator=draw).to(fragment.device)
        elif not self.training:
            chosen = torch.topk(scores, k=1, dim=-1).indices.view(b, n_key)
        else:
            if self.sample_type == "topkpertubation":
                weights = perturbed_topk(scores, 1, self.num_samples, self.sigma)[:, 0]  # [B*K, R]
            else:
                weights = F.gumbel_softmax(scores, tau=1.0, hard=True, dim=-1)
            weights = weights.view(b, n_key, -1)[:, group_id]  # [B, T, R]
            return self._weighted_windows(fragment, weights, n_cols)

        chosen = chosen[:, group_id]  # [B, T]
        return self._gather_windows(fragment, chosen, n_cols)

    def _offsets(self, region: int | torch.Tensor, n_cols: int) -> tuple[int | torch.Tensor, int | torch.Tensor]:
        """Pixel offsets (top, left) of window `region` (raster index; int or tensor)."""
        step = self.stride * self.anchor_size
        return (region // n_cols) * step, (region % n_cols) * step

    def _gather_windows(self, fragment: torch.Tensor, chosen: torch.Tensor, n_cols: int) -> torch.Tensor:
        """Cut window chosen[b, t] out of frame t of video b: -> [B, 3, T, k*a, k*a]."""
        b, c, t = fragment.shape[:3]
        size = self.window * self.anchor_size
        top, left = self._offsets(chosen, n_cols)  # [B, T]
        span = torch.arange(size, device=fragment.device)
        rows = (top[..., None] + span)[:, None, :, :, None]  # [B, 1, T, size, 1]
        cols = (left[..., None] + span)[:, None, :, None, :]  # [B, 1, T, 1, size]
        bi = torch.arange(b, device=fragment.device).view(b, 1, 1, 1, 1)
        ci = torch.arange(c, device=fragment.device).view(1, c, 1, 1, 1)
        ti = torch.arange(t, device=fragment.device).view(1, 1, t, 1, 1)
        return fragment[bi, ci, ti, rows, cols]

    def _weighted_windows(self, fragment: torch.Tensor, weights: torch.Tensor, n_cols: int) -> torch.Tensor:
        """sum_r weights[b, t, r] * window_r of frame t of video b: -> [B, 3, T, k*a, k*a]."""
        size = self.window * self.anchor_size
        out = None
        for r in range(weights.shape[-1]):
            top, left = self._offsets(r, n_cols)
            crop = fragment[..., top: top + size, left: left + size]
            term = weights[:, None, :, r, None, None] * crop
            out = term if out is None else out + term
        return out
