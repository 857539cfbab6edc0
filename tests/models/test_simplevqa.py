"""SimpleVQA backbone: reference equivalence, checkpoint key mapping, pretrained weight loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from kvq.core.checkpoint import load_into, read_checkpoint
from kvq.eval.conformance import check_fixture
from kvq.core.weights import MissingWeightsError
from models.network import VQANetwork
from models.simplevqa import DEAD_MLP_REASON, SimpleVQABackbone
from tests.conftest import load_json


def simplevqa_network() -> VQANetwork:
    return VQANetwork({"simpleVQA": {"backbone": {"pretrained": False}, "head": {}}})


def test_matches_reference_outputs(conformance_dir: Path, detweights) -> None:
    results = check_fixture(conformance_dir / "expected_simplevqa.json", detweights)
    assert [r.case for r in results] == ["simplevqa:8x224", "simplevqa:8x448"]
    for r in results:
        assert r.passed, r.to_dict()


def test_state_dict_is_reference_minus_dead_mlp(conformance_dir: Path) -> None:
    manifest = load_json(conformance_dir / "manifest_simplevqa.json")
    own = {k: list(v.shape) for k, v in simplevqa_network().state_dict().items()}
    expected = {k: v for k, v in manifest.items() if not k.startswith("simpleVQA_backbone.quality.")}
    assert own == expected


def test_wrapped_checkpoint_loads_like_bare_one(conformance_dir: Path, detweights, tmp_path: Path) -> None:
    manifest = load_json(conformance_dir / "manifest_simplevqa.json")
    bare_model, wrapped_model = simplevqa_network(), simplevqa_network()
    state = detweights.fill_state_dict(manifest, reference=bare_model.state_dict())
    bare_report = load_into(bare_model, state)

    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "validation_results": (0, 0)}, path)
    wrapped_report = load_into(wrapped_model, read_checkpoint(path))

    dead = {k for k in manifest if k.startswith("simpleVQA_backbone.quality.")}
    assert len(dead) == 4
    for report in (bare_report, wrapped_report):
        assert report.missing == [] and report.unexpected == []
        assert report.dropped == {k: DEAD_MLP_REASON for k in dead}
    wrapped = wrapped_model.state_dict()
    for k, v in bare_model.state_dict().items():
        assert torch.equal(v, wrapped[k]), k


def test_features_layout() -> None:
    model = SimpleVQABackbone(pretrained=False).eval()
    feat = torch.rand(2, 3, 2304)
    with torch.no_grad():
        out = model({"simpleVQA": torch.randn(2, 3, 3, 64, 64), "feat": feat})
    assert out.shape == (2, 3, 9472)
    assert torch.equal(out[..., 7168:], feat)
    with pytest.raises(ValueError, match="does not match"):
        model({"simpleVQA": torch.randn(1, 3, 3, 64, 64), "feat": torch.rand(1, 8, 2304)})


def test_pretrained_missing_file_raises(isolated_weight_dirs: Path) -> None:
    with pytest.raises(MissingWeightsError, match="resnet50-0676ba61.pth"):
        SimpleVQABackbone(pretrained=True)
    with pytest.raises(MissingWeightsError, match="nowhere.pth"):
        SimpleVQABackbone(pretrained=True, pretrained_path=isolated_weight_dirs / "nowhere.pth")


def test_pretrained_loads_torchvision_state_dict(isolated_weight_dirs: Path) -> None:
    source = torchvision.models.resnet50(weights=None).state_dict()
    assert any(k.startswith("fc.") for k in source)
    path = isolated_weight_dirs / "resnet50-0676ba61.pth"
    torch.save(source, path)
    for model in (SimpleVQABackbone(pretrained=True, pretrained_path=path), SimpleVQABackbone(pretrained=True)):
        own = model.state_dict()
        assert set(own) == {k for k in source if not k.startswith("fc.")}
        for k, v in own.items():
            assert torch.equal(v, source[k]), k
