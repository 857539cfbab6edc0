"""Quality-aware region selection: window choice, cropping, PerturbedTopK gradient."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.region_selection import RegionSelection, min_max_norm, perturbed_topk

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference_crop(fragment: torch.Tensor, region: torch.Tensor, window: int = 7, anchor: int = 32) -> torch.Tensor:
    """Windows cut the way the reference does (mini-patches as channels, unfold, regroup).

    fragment [B, C, T, H, W], region [B, T] (raster window index) -> [B, C, T, window*anchor, ...].
    """
    b, c, t, h, w = fragment.shape
    gh, gw = h // anchor, w // anchor
    x = fragment.permute(0, 2, 1, 3, 4).reshape(b * t, c, gh, anchor, gw, anchor)
    x = x.permute(0, 1, 3, 5, 2, 4).reshape(b * t, c * anchor * anchor, gh, gw)
    x = F.unfold(x, kernel_size=window, stride=1).permute(0, 2, 1)  # [BT, R, C*a*a*k*k]
    patches = x[torch.arange(b * t), region.reshape(-1)]
    patches = patches.view(b, t, c, anchor, anchor, window, window).permute(0, 2, 1, 5, 3, 6, 4)
    return patches.reshape(b, c, t, window * anchor, window * anchor)


def _inputs(b: int = 2, t: int = 4, device: str = "cpu"):
    gen = torch.Generator().manual_seed(0)
    fragment = torch.randn(b, 3, t, 288, 288, generator=gen).to(device)
    score = torch.rand(b, 2, 49, generator=gen).to(device)
    group_id = torch.tensor([0, 0, 1, 1])[:t].to(device)
    return fragment, score, group_id


def test_window_scores_are_normalised_window_means():
    sel = RegionSelection()
    score = torch.rand(3, 81)
    out = sel.window_scores(score, (9, 9))
    maps = score.view(3, 9, 9)
    means = torch.stack([maps[:, i:i + 7, j:j + 7].mean(dim=(1, 2)) for i in range(3) for j in range(3)], dim=1)
    assert torch.allclose(out, min_max_norm(means), atol=1e-6)
    assert (out.min(dim=1).values == 0).all() and (out.max(dim=1).values < 1).all()


def test_window_scores_resize_clip_map_nearest():
    sel = RegionSelection()
    score = torch.arange(49.0).view(1, 49)
    resized = F.interpolate(score.view(1, 1, 7, 7), size=(9, 9), mode="nearest").view(1, 81)
    assert torch.equal(sel.window_scores(score, (9, 9)), sel.window_scores(resized, (9, 9)))


@pytest.mark.parametrize("device", DEVICES)
def test_eval_selects_best_window_per_group(device):
    fragment, score, group_id = _inputs(device=device)
    sel = RegionSelection().eval()
    out = sel(fragment, score, group_id)
    assert out.shape == (2, 3, 4, 224, 224) and out.device.type == device
    best = sel.window_scores(score.reshape(4, 49), (9, 9)).argmax(dim=1).view(2, 2)
    expected = reference_crop(fragment.cpu(), best[:, group_id].cpu())
    assert torch.equal(out.cpu(), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_train_topk_crops_perturbed_choice_and_passes_gradient(device):
    fragment, score, group_id = _inputs(device=device)
    score.requires_grad_(True)
    sel = RegionSelection(num_samples=1).train()
    out = sel(fragment, score, group_id)
    windows = [reference_crop(fragment.cpu(), torch.full((2, 4), r)) for r in range(9)]
    for bi in range(2):
        chosen = []
        for ti in range(4):
            hits = [r for r in range(9) if torch.equal(out[bi, :, ti].detach().cpu(), windows[r][bi, :, ti])]
            assert len(hits) == 1
            chosen.append(hits[0])
        assert chosen[0] == chosen[1] and chosen[2] == chosen[3]  # frames of one group share the window
    out.square().mean().backward()
    assert score.grad is not None and score.grad.abs().sum() > 0


def test_gumbel_is_hard_and_differentiable():
    fragment, score, group_id = _inputs()
    score.requires_grad_(True)
    out = RegionSelection(sample_type="gumbel").train()(fragment, score, group_id)
    windows = [reference_crop(fragment, torch.full((2, 4), r)) for r in range(9)]
    assert any(torch.allclose(out[0, :, 0].detach(), w[0, :, 0]) for w in windows)
    out.mean().backward()
    assert score.grad is not None and score.grad.abs().sum() > 0


def test_random_picks_valid_windows_in_eval_and_train():
    fragment, score, group_id = _inputs()
    windows = [reference_crop(fragment, torch.full((2, 4), r)) for r in range(9)]
    for mode in (False, True):
        out = RegionSelection(sample_type="random").train(mode)(fragment, score, group_id)
        assert any(torch.equal(out[1, :, 2], w[1, :, 2]) for w in windows)
    selector = RegionSelection(sample_type="random").eval()
    assert torch.equal(selector(fragment, score, group_id), selector(fragment, score, group_id))


def test_rejects_multinomial_and_unknown_types():
    with pytest.raises(ValueError, match="multinomial"):
        RegionSelection(sample_type="multinomial")
    with pytest.raises(ValueError, match="did you mean 'topkpertubation'"):
        RegionSelection(sample_type="topkperturbation")


def test_rejects_fragments_not_on_the_mini_patch_grid():
    fragment, score, group_id = _inputs()
    with pytest.raises(ValueError, match="multiple"):
        RegionSelection().eval()(fragment[..., :280, :280], score, group_id)


def test_perturbed_topk_backward_is_the_reference_estimator():
    scores = torch.randn(3, 9, requires_grad=True)
    grad_out = torch.randn(3, 2, 9)
    torch.manual_seed(1)
    out = perturbed_topk(scores, 2, 50, 0.5)
    out.backward(grad_out)
    torch.manual_seed(1)
    noise = torch.randn(3, 50, 9)
    idx = torch.topk(scores.detach()[:, None] + 0.5 * noise, 2, dim=-1).indices.sort(dim=-1).values
    one_hot = F.one_hot(idx, 9).float()  # [3, 50, 2, 9]
    assert torch.allclose(out, one_hot.mean(dim=1))
    expected = torch.einsum("nkd,nkd->nd", grad_out, torch.einsum("nskd,nsd->nkd", one_hot, noise) / 50 / 0.5)
    assert torch.allclose(scores.grad, expected, atol=1e-6)


def test_perturbed_topk_gradient_matches_smoothed_argmax():
    """Two scores: E[indicator_0] = Phi(u), u = (s0 - s1) / (sigma sqrt 2); d/ds0 = phi(u) / (sigma sqrt 2).

    The reference estimator keeps only the diagonal d indicator_d / d s_d (no cross terms).
    """
    torch.manual_seed(0)
    sigma, delta = 0.5, 0.2
    scores = torch.tensor([[delta, 0.0]], requires_grad=True)
    out = perturbed_topk(scores, 1, 200_000, sigma)
    out[0, 0, 0].backward()
    u = delta / (sigma * math.sqrt(2))
    phi = math.exp(-u * u / 2) / math.sqrt(2 * math.pi)
    assert abs(out[0, 0, 0].item() - 0.5 * (1 + math.erf(u / math.sqrt(2)))) < 0.01
    assert abs(scores.grad[0, 0].item() - phi / (sigma * math.sqrt(2))) < 0.02
    assert scores.grad[0, 1].item() == 0.0
