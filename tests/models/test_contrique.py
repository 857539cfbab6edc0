"""CONTRIQUE distortion encoder: key layout, checkpoint loading, patch tokens, frozen eval."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kvq.core.weights import MissingWeightsError
from models.contrique import ContriqueEncoder
from tests.conftest import load_json


@pytest.fixture(scope="module")
def encoder() -> ContriqueEncoder:
    torch.manual_seed(0)
    model = ContriqueEncoder(pretrained=False)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return model


def test_keys_are_the_reference_distortion_tool(encoder, conformance_dir):
    manifest = load_json(conformance_dir / "manifest_ksvqe_ts1.json")
    prefix = "KSVQE_backbone.distortion_tool."
    expected = {k[len(prefix):]: tuple(v) for k, v in manifest.items() if k.startswith(prefix)}
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == expected


def test_tokens_are_projected_patches_in_raster_order(encoder):
    video = torch.randn(2, 3, 2, 64, 96)
    with torch.no_grad():
        tokens = encoder(video)
        assert tokens.shape == (2, 2, 6, 128)
        b, t, i, j = 1, 1, 1, 2  # patch row 1, column 2 of frame 1 of video 1 -> token 1 * 3 + 2
        patch = video[b, :, t, 32 * i: 32 * i + 32, 32 * j: 32 * j + 32][None]
        expected = encoder.projector(F.normalize(encoder.encoder(patch).flatten(1), dim=1))[0]
    assert torch.allclose(tokens[b, t, i * 3 + j], expected, atol=1e-5)


def test_frozen_and_always_in_eval_mode(encoder):
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        a = encoder(torch.ones(1, 3, 1, 32, 32))
        b = encoder(torch.cat([torch.ones(1, 3, 1, 32, 32), torch.randn(1, 3, 1, 32, 32)], dim=0))[:1]
    assert torch.allclose(a, b, atol=1e-5)  # running statistics, not batch statistics


def test_rejects_frames_not_made_of_whole_patches(encoder):
    with pytest.raises(ValueError, match="multiple"):
        encoder(torch.randn(1, 3, 1, 40, 32))


@pytest.mark.parametrize("layout", ["bare", "module_prefix"])
def test_loads_contrique_checkpoint(encoder, tmp_path, layout):
    state = encoder.state_dict()
    if layout == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "CONTRIQUE_checkpoint25.tar"
    torch.save(state, path)
    loaded = ContriqueEncoder(pretrained=True, path=path)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_strict_load_rejects_other_layouts(encoder, tmp_path):
    path = tmp_path / "other.tar"
    torch.save({k.replace("projector.", "head."): v for k, v in encoder.state_dict().items()}, path)
    with pytest.raises(RuntimeError, match="projector"):
        ContriqueEncoder(pretrained=True, path=path)


def test_missing_file_raises_and_pretrained_false_reads_nothing(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="CONTRIQUE_checkpoint25.tar"):
        ContriqueEncoder(pretrained=True, path=tmp_path / "absent.tar")

    def no_disk(*args, **kwargs):
        raise AssertionError("pretrained=False must not read weights")

    monkeypatch.setattr(torch, "load", no_disk)
    monkeypatch.setattr("models.contrique.resolve_weight", no_disk)
    assert not ContriqueEncoder(pretrained=False).training
