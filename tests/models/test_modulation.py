"""KSVQE modulation parts against the reference formulations (written out here independently)."""
from __future__ import annotations

import math

import torch

from models.modulation import (CrossAttention, DistortionModulation, SemanticModulation, TemporalSelfAttention,
                               adapter_mlp, distortion_contrastive_loss)


def test_cross_attention_is_reference_crossattention1():
    """Heads split along channels and stacked on the batch axis, logits / sqrt(full dim), no out proj."""
    torch.manual_seed(0)
    attn = CrossAttention(48, 6)
    q_in, kv_in = torch.randn(5, 16, 48), torch.randn(5, 9, 48)
    q, k, v = attn.fc_q(q_in), attn.fc_k(kv_in), attn.fc_v(kv_in)
    q_, k_, v_ = (torch.cat(t.split(8, 2), 0) for t in (q, k, v))
    a = torch.softmax(q_.bmm(k_.transpose(1, 2)) / math.sqrt(48), 2)
    expected = torch.cat(a.bmm(v_).split(5, 0), 2)
    assert torch.allclose(attn(q_in, kv_in), expected, atol=1e-6)


def test_temporal_self_attention_is_standard_multi_head():
    torch.manual_seed(0)
    attn = TemporalSelfAttention(24, 3)
    x = torch.randn(4, 7, 24)
    q, k, v = attn.to_qkv(x).chunk(3, -1)
    outs = []
    for h in range(3):
        sl = slice(8 * h, 8 * h + 8)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) * 8 ** -0.5, -1)
        outs.append(w @ v[..., sl])
    expected = attn.to_out(torch.cat(outs, -1))
    assert torch.allclose(attn(x), expected, atol=1e-6)
    assert attn.to_qkv.bias is None


def test_semantic_modulation_is_spatial_gamma_beta():
    torch.manual_seed(0)
    mod = SemanticModulation(16)
    cond, x = torch.randn(3, 16, 5, 5), torch.randn(3, 16, 5, 5)
    gamma = torch.sigmoid(torch.einsum("nchw,c->nhw", cond, mod.conv_gama.weight.flatten()) + mod.conv_gama.bias)
    beta = torch.einsum("nchw,c->nhw", cond, mod.conv_beta.weight.flatten()) + mod.conv_beta.bias
    assert torch.allclose(mod(cond, x), gamma[:, None] * x + beta[:, None], atol=1e-6)


def test_distortion_modulation_uses_unbiased_std_and_mean():
    torch.manual_seed(0)
    mod = DistortionModulation(8)
    cond, x = torch.randn(2, 8, 3, 4, 4), torch.randn(2, 48, 8)
    flat = cond.reshape(2, 8, -1)
    std = (((flat - flat.mean(-1, keepdim=True)) ** 2).sum(-1) / (flat.shape[-1] - 1)).sqrt()
    gamma = torch.sigmoid(mod.get_gamma(std))
    beta = mod.get_beta(flat.mean(-1))
    assert torch.allclose(mod(cond, x), gamma[:, None] * x + beta[:, None], atol=1e-6)


def test_adapter_keys_and_shapes():
    mlp = adapter_mlp(768, 192, 384)
    assert {k: tuple(v.shape) for k, v in mlp.state_dict().items()} == {
        "0.weight": (192, 768), "0.bias": (192,), "2.weight": (384, 192), "2.bias": (384,)}
    assert (mlp(torch.randn(2, 768)) >= 0).all()


def reference_contrastive(tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference distortion_contrastive_supervised, written out densely."""
    b, t, g, _ = tokens.shape
    feats = tokens.reshape(b * t * g, -1)
    label = (labels.unsqueeze(1).repeat(1, b) == labels).float()
    labels_tok = label.repeat(1, t * g).view(b * t * g, -1)
    z = torch.nn.functional.normalize(feats, p=2, dim=1)
    sim = z @ z.T / 0.1
    positive = (labels_tok @ labels_tok.T).fill_diagonal_(0)
    zero_diag = torch.ones(b * t * g, b * t * g).fill_diagonal_(0)
    denominator = (torch.exp(sim) * zero_diag).sum(1)
    return torch.mean(torch.log(denominator) - (sim * positive).sum(1) / positive.sum(1))


def test_contrastive_loss_matches_reference_with_count_weighted_positives():
    torch.manual_seed(0)
    tokens = torch.randn(3, 2, 5, 16)
    labels = torch.tensor([4, 4, 1])  # videos 0 and 1 share a label: their positives weigh 2
    loss = distortion_contrastive_loss(tokens, labels)
    assert torch.allclose(loss, reference_contrastive(tokens, labels), atol=1e-5)
    binary = reference_contrastive(tokens, torch.tensor([4, 5, 1]))
    assert not torch.allclose(loss, binary)


def test_contrastive_loss_single_video_and_gradient():
    tokens = torch.randn(1, 4, 49, 128, requires_grad=True)
    loss = distortion_contrastive_loss(tokens, torch.tensor([3]))
    assert torch.allclose(loss, reference_contrastive(tokens.detach(), torch.tensor([3])), atol=1e-5)
    loss.backward()
    assert torch.isfinite(tokens.grad).all() and tokens.grad.abs().sum() > 0
