"""CLIP visual tower with CLS adapters: numerics, trainable parts, OpenAI weight formats."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn

from kvq.core.weights import MissingWeightsError
from models.clip_visual import ClipVisualAdapter, read_openai_visual_state, resize_pos_embed

TINY = dict(image_size=32, patch_size=16, width=64, layers=3, heads=2, output_dim=16)


def tiny(clip_location: int = 1, cls_use: bool = True, **kwargs) -> ClipVisualAdapter:
    torch.manual_seed(0)
    return ClipVisualAdapter(clip_location, cls_use, pretrained=False, **TINY, **kwargs)


def test_vit_b16_parameter_names_and_quick_gelu():
    model = ClipVisualAdapter(8, True, pretrained=False)
    keys = model.state_dict().keys()
    assert {"visual.class_embedding", "visual.positional_embedding", "visual.proj", "visual.conv1.weight",
            "visual.ln_pre.weight", "visual.transformer.resblocks.11.attn.in_proj_weight",
            "visual.transformer.resblocks.11.attn.out_proj.bias", "visual.transformer.resblocks.11.mlp.c_fc.weight",
            "visual.transformer.resblocks.11.mlp.c_proj.bias", "visual.transformer.resblocks.11.ln_2.bias",
            "visual.ln_post.weight", "adapter_layer.3.2.weight"} <= set(keys)
    assert "adapter_layer.4.0.weight" not in keys
    assert model.visual.positional_embedding.shape == (197, 768)
    assert all(isinstance(b.mlp.gelu, QuickGELU) for b in model.visual.transformer.resblocks)


def test_matches_open_clip_forward_without_adapters():
    """At the native grid and without adapters the unrolled forward is open_clip's (before ln_post)."""
    model = tiny(cls_use=False).eval()
    images = torch.randn(2, 3, 32, 32)
    _, cls, patches = model(images)
    model.visual.output_tokens = True
    _, tokens = model.visual(images)
    assert torch.allclose(model.visual.ln_post(patches), tokens, atol=1e-5)


def test_resize_pos_embed_is_reference_bicubic():
    pos = torch.randn(1 + 14 * 14, 32)
    out = resize_pos_embed(pos, (14, 14), (7, 7))
    grid = pos[None, 1:].permute(0, 2, 1).reshape(1, -1, 14, 14)
    grid = F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False)
    expected = torch.cat([pos[None, :1], grid.permute(0, 2, 3, 1).reshape(1, 49, -1)], dim=1)[0]
    assert torch.equal(out, expected)
    assert resize_pos_embed(pos, (14, 14), (14, 14)) is pos


def test_outputs_cosine_scores_and_tokens_on_a_resized_grid():
    model = tiny().eval()
    cls_attn, cls, patches = model(torch.randn(3, 3, 48, 48))  # 3 x 3 grid, positions resized from 2 x 2
    assert cls_attn.shape == (3, 9) and cls.shape == (3, 1, 64) and patches.shape == (3, 9, 64)
    assert torch.allclose(cls_attn, F.cosine_similarity(cls, patches, dim=-1))
    assert cls_attn.abs().max() <= 1 + 1e-6


def test_cls_adapters_mix_half_and_half():
    model = tiny(clip_location=2).eval()
    for p in model.adapter_layer.parameters():
        nn.init.zeros_(p)  # adapter output 0 -> the CLS token is halved after block 2
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, cls, patches = model(images)
        plain = tiny(cls_use=False).eval()
        plain.visual.load_state_dict(model.visual.state_dict())
        _, cls_plain, patches_plain = plain(images)
    assert torch.allclose(cls, 0.5 * cls_plain, atol=1e-6)
    assert torch.allclose(patches, patches_plain, atol=1e-6)


def test_only_adapters_train_and_checkpointing_keeps_gradients():
    model = tiny(checkpoint=False).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("adapter_layer.")}
    assert len(model.adapter_layer) == 2
    images = torch.randn(2, 3, 32, 32)
    model(images)[0].sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == trainable and all(g.abs().sum() > 0 for g in grads.values())
    model.zero_grad()
    model.checkpoint = True
    model(images)[0].sum().backward()
    assert all(torch.allclose(p.grad, grads[n], atol=1e-6) for n, p in model.named_parameters() if p.requires_grad)


def test_cls_use_false_has_no_trainable_parameters():
    model = tiny(cls_use=False)
    assert not hasattr(model, "adapter_layer")
    assert not any(p.requires_grad for p in model.parameters())


def _openai_like_state(model: ClipVisualAdapter) -> dict:
    """An OpenAI CLIP state dict: `visual.*` in float16 next to text-tower keys."""
    state = {f"visual.{k}": v.half() for k, v in model.visual.state_dict().items()}
    state.update({"token_embedding.weight": torch.zeros(4, 8), "logit_scale": torch.ones(())})
    return state


def test_loads_openai_plain_state_dict(tmp_path):
    source = tiny()
    path = tmp_path / "ViT-tiny.pt"
    torch.save(_openai_like_state(source), path)
    model = ClipVisualAdapter(1, True, pretrained=True, path=path, **TINY)
    for k, v in model.visual.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, source.visual.state_dict()[k].half().float()), k
    assert not any(p.requires_grad for p in model.visual.parameters())


def test_loads_openai_torchscript_archive(tmp_path):
    source = tiny()

    class Holder(nn.Module):
        def __init__(self, visual: nn.Module) -> None:
            super().__init__()
            self.visual = visual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual.conv1(x)

    path = tmp_path / "ViT-tiny-jit.pt"
    with pytest.warns(FutureWarning):  # TorchScript is deprecated, still OpenAI's format
        torch.jit.save(torch.jit.trace(Holder(source.visual).eval(), torch.randn(1, 3, 32, 32)), str(path))
    state = read_openai_visual_state(path)
    assert set(state) == set(source.visual.state_dict())
    model = ClipVisualAdapter(1, True, pretrained=True, path=path, **TINY)
    assert all(torch.equal(v, source.visual.state_dict()[k]) for k, v in model.visual.state_dict().items())


def test_rejects_files_without_visual_weights(tmp_path):
    path = tmp_path / "not_clip.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="visual"):
        read_openai_visual_state(path)


def test_missing_file_raises_and_pretrained_false_reads_nothing(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="ViT-B-16.pt"):
        ClipVisualAdapter(1, pretrained=True, path=tmp_path / "absent.pt", **TINY)

    def no_disk(*args, **kwargs):
        raise AssertionError("pretrained=False must not read weights")

    monkeypatch.setattr(torch, "load", no_disk)
    monkeypatch.setattr(torch.jit, "load", no_disk)
    monkeypatch.setattr("models.clip_visual.resolve_weight", no_disk)
    assert ClipVisualAdapter(1, pretrained=False, **TINY).adapter_layer is not None


def test_a_file_that_is_no_clip_checkpoint_is_named(tmp_path):
    bad = tmp_path / "ViT-B-16.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="ViT-B-16.pt: neither OpenAI's TorchScript CLIP archive"):
        read_openai_visual_state(bad)
