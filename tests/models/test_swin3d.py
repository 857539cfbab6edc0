"""Video Swin-T 3D (FAST-VQA, GRPB): reference equivalence, Kinetics loading, variants."""
from __future__ import annotations

import logging

import pytest
import torch

import models.swin3d as swin3d
from kvq.core.checkpoint import load_into
from kvq.eval.conformance import compare_case
from models.registry import BACKBONES
from kvq.core.weights import MissingWeightsError
from models.network import VQANetwork
from tests.conftest import load_json

VARIANTS = ["swin_tiny_grpb", "swin_tiny_grpb_m", "swin_tiny", "swin_small"]


@pytest.fixture(scope="module")
def fastvqa(conformance_dir, detweights):
    """VQANetwork(swin_tiny_grpb) holding the conformance weights, in eval mode."""
    model = VQANetwork({"swin_tiny_grpb": {"backbone": {"pretrained": False}, "head": {}}})
    manifest = load_json(conformance_dir / "manifest_fastvqa.json")
    own = model.state_dict()
    assert sorted(manifest) == sorted(own)
    assert all(tuple(manifest[k]) == tuple(v.shape) for k, v in own.items())
    report = load_into(model, detweights.fill_state_dict(manifest, reference=own))
    integer_buffers = {k for k, v in own.items() if not v.is_floating_point()}
    assert set(report.missing) <= integer_buffers
    assert not report.unexpected and not report.dropped
    return model.eval()


def _case(conformance_dir, index: int) -> dict:
    return load_json(conformance_dir / "expected_fastvqa.json")["cases"][index]


@pytest.mark.parametrize("index", [
    pytest.param(0, id="32x224", marks=pytest.mark.slow),
    pytest.param(1, id="16x288"),
])
def test_matches_reference(fastvqa, conformance_dir, detweights, index):
    case = _case(conformance_dir, index)
    name, shape, lo, hi = case["input"]["technical"]
    video = detweights.det_input(name, shape, lo, hi)
    with torch.no_grad():
        feats = fastvqa.backbone("swin_tiny_grpb")({"technical": video})
        score = fastvqa.swin_tiny_grpb_head(feats)
    result = compare_case(case, {"features": feats, "score": score})
    assert result.passed, result.failures


def _mmaction_checkpoint(model: torch.nn.Module, path) -> None:
    """Save `model` the way mmaction stores Video Swin: no fragment tables, `backbone.` keys, a head."""
    state = {"backbone." + k: v.clone() for k, v in model.state_dict().items() if "fragment" not in k}
    state["cls_head.fc_cls.weight"] = torch.zeros(400, 768)
    torch.save({"meta": {}, "state_dict": state}, path)


def test_kinetics_checkpoint_loads(tmp_path, caplog):
    torch.manual_seed(0)
    source = BACKBONES.get("swin_tiny_grpb")(pretrained=False)
    path = tmp_path / "swin_tiny_k400.pth"
    _mmaction_checkpoint(source, path)

    loaded = BACKBONES.get("swin_tiny_grpb")(pretrained=True, pretrained_path=str(path))
    expected = source.state_dict()
    for key, value in loaded.state_dict().items():
        if "fragment_position_bias_table" in key:
            rel = expected[key.replace("fragment_position_bias_table", "relative_position_bias_table")]
            assert torch.equal(value, rel), key
        else:
            assert torch.equal(value, expected[key]), key
    frag_keys = [k for k in expected if "fragment_position_bias_table" in k]
    assert len(frag_keys) == 2 + 2 + 6  # GRPB in stages 0-2 only

    # window (4, 4, 4): bias tables and indices do not fit -> skipped and logged, the rest loads
    with caplog.at_level(logging.WARNING, logger="models.swin3d_backbone"):
        small_window = BACKBONES.get("swin_tiny_grpb_m")(pretrained=True, pretrained_path=str(path))
    assert "layers.0.blocks.0.attn.relative_position_bias_table skipped" in caplog.text
    assert torch.equal(small_window.layers[2].blocks[3].mlp.fc1.weight, source.layers[2].blocks[3].mlp.fc1.weight)


def test_missing_weights_raise(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        BACKBONES.get("swin_tiny_grpb")(pretrained=True, pretrained_path=str(tmp_path / "absent.pth"))
    monkeypatch.setattr("kvq.core.weights.search_dirs", lambda: [tmp_path])
    with pytest.raises(MissingWeightsError, match="swin_tiny_patch244_window877_kinetics400_1k.pth"):
        BACKBONES.get("swin_tiny")()


@pytest.mark.parametrize("key", VARIANTS)
def test_variant_shapes(key):
    torch.manual_seed(0)
    backbone = BACKBONES.get(key)(pretrained=False).eval()
    assert backbone.head_type == "VQAHead"
    assert backbone.head_defaults == {"in_channels": 768, "hidden_channels": 64}
    tables = [n for n, _ in backbone.named_parameters() if "fragment_position_bias_table" in n]
    assert bool(tables) == (key == "swin_tiny_grpb")
    window = (4, 4, 4) if key == "swin_tiny_grpb_m" else (8, 7, 7)
    assert all(layer.window_size == window for layer in backbone.layers)
    assert [len(layer.blocks) for layer in backbone.layers] == ([2, 2, 18, 2] if key == "swin_small" else [2, 2, 6, 2])
    with torch.no_grad():
        feats = backbone({"technical": torch.randn(2, 3, 4, 96, 64)})
    assert feats.shape == (2, 768, 2, 3, 2)
    assert torch.isfinite(feats).all()


def test_stage_by_stage_equals_forward():
    torch.manual_seed(0)
    backbone = BACKBONES.get("swin_tiny_grpb")(pretrained=False).eval()
    video = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        x = backbone.pos_drop(backbone.patch_embed(video))
        shapes = [tuple(x.shape)]
        for layer in backbone.layers:
            x = layer(x)
            shapes.append(tuple(x.shape))
        x = backbone.apply_norm(x)
        assert torch.equal(x, backbone({"technical": video}))
    assert shapes == [(1, 96, 2, 16, 16), (1, 192, 2, 8, 8), (1, 384, 2, 4, 4), (1, 768, 2, 2, 2), (1, 768, 2, 2, 2)]


def test_gradient_checkpointing_same_outputs(monkeypatch):
    """Checkpointing on/off: same outputs and gradients in training (same seed) and in eval."""
    torch.manual_seed(0)
    plain = BACKBONES.get("swin_tiny_grpb")(pretrained=False, checkpoint=False)
    ckpt = BACKBONES.get("swin_tiny_grpb")(pretrained=False, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    real_checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or real_checkpoint(*a, **k))
    video = torch.randn(1, 3, 4, 64, 64)

    def run(model: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(1)  # drop_path is active in train mode
        out = model({"technical": video})
        out.square().mean().backward()
        return out.detach(), [p.grad for p in model.parameters()]

    swin3d.fragment_gate.cache_clear()
    swin3d.shifted_window_mask.cache_clear()
    with torch.inference_mode():  # masks cached here must still serve a training step
        plain.eval()({"technical": video})
    out_plain, grad_plain = run(plain.train())
    assert not calls
    out_ckpt, grad_ckpt = run(ckpt.train())
    assert calls, "checkpoint=True did not checkpoint in training"
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-9) for a, b in zip(grad_plain, grad_ckpt))

    calls.clear()
    with torch.no_grad():
        assert torch.equal(plain.eval()({"technical": video}), ckpt.eval()({"technical": video}))
    assert not calls


def test_frozen_stages_stay_frozen():
    backbone = BACKBONES.get("swin_tiny")(pretrained=False, frozen_stages=2).train()
    assert not any(p.requires_grad for p in backbone.patch_embed.parameters())
    assert not any(p.requires_grad for layer in backbone.layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in backbone.layers[2].parameters())
    assert not backbone.layers[1].training and backbone.layers[2].training


def explicit_window_attention(attn: swin3d.WindowAttention3D, x: torch.Tensor, window: tuple[int, int, int],
                              mask: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """WindowAttention3D's formula (GRPB gate and shift mask) with explicit tensors: the scores,
    biased and masked, then softmax. x [B * nW, N, C]."""
    bn, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(bn, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    nw = gate.shape[0]
    bias = (attn._bias(attn.relative_position_bias_table, window)[None] * gate[:, None]
            + attn._bias(attn.fragment_position_bias_table, window) * (1 - gate[:, None]))
    scores = scores.view(bn // nw, nw, attn.num_heads, n, n) + bias[None] + mask[None, :, None]
    out = scores.view(bn, attn.num_heads, n, n).softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(bn, n, c))


def test_window_attention_through_sdpa_equals_the_formula(monkeypatch):
    """Relative + fragment bias and shift mask as one additive mask: same outputs in fp32 as the
    explicit formula, and under autocast the mask reaches scaled_dot_product_attention in the
    autocast dtype."""
    torch.manual_seed(0)
    window, padded, shift = (2, 3, 3), (4, 6, 6), (1, 1, 1)
    attn = swin3d.WindowAttention3D(24, window, 3, frag_bias=True).eval()
    torch.nn.init.normal_(attn.fragment_position_bias_table, std=0.5)
    mask = swin3d.shifted_window_mask(padded, window, shift, torch.device("cpu"))
    gate = swin3d.fragment_gate(padded, window, shift, torch.device("cpu"))
    x = torch.randn(2 * mask.shape[0], 18, 24)  # 2 videos x 8 windows
    with torch.no_grad():
        torch.testing.assert_close(attn(x, window, mask, gate), explicit_window_attention(attn, x, window, mask, gate),
                                   atol=1e-5, rtol=1e-5)
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(swin3d.F, "scaled_dot_product_attention",
                        lambda *a, **kw: seen.append(kw["attn_mask"].dtype) or sdpa(*a, **kw))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x, window, mask, gate)
    assert seen == [torch.bfloat16]
