"""SlowFast R50 feature extractor: reference equivalence (fixtures, pytorchvideo's own network), batching,
weight loading, preprocessing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kvq.core.checkpoint import load_into
from kvq.eval.conformance import check_fixture, compare_case
from kvq.core.device import to_channels_last
from kvq.core.weights import MissingWeightsError
from models.slowfast import KINETICS_CLASSES, SlowFastExtractor, pack_pathways, preprocess_frames, to_extractor_keys
from tests.conftest import load_json


def pytorchvideo_state_dict() -> dict[str, torch.Tensor]:
    """A random `slowfast_r50().state_dict()` in pytorchvideo's layout (`blocks.<i>.*`, the Kinetics head
    `blocks.6.proj.*`), made without pytorchvideo (test_same_network_as_pytorchvideo checks the layout)."""
    own = SlowFastExtractor(pretrained=False).state_dict()
    state = {"blocks." + k[len("feature_extraction."):]: v for k, v in own.items()}
    return {**state, "blocks.6.proj.weight": torch.randn(KINETICS_CLASSES, 2048 + 256),  # slow + fast channels
            "blocks.6.proj.bias": torch.zeros(KINETICS_CLASSES)}


def layer_settings(module: torch.nn.Module) -> list[tuple[str, str, dict]]:
    """(name, class, hyperparameters) of every leaf module; sizes as int tuples (pytorchvideo gives
    lists and numpy ints), pytorchvideo's `block_final_bn` initialisation flag left out."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return tuple(int(v) for v in value)
        return int(value) if isinstance(value, np.integer) else value

    return [(name, type(m).__name__, {k: plain(v) for k, v in vars(m).items()
                                      if not k.startswith("_") and k not in ("training", "block_final_bn")})
            for name, m in module.named_modules() if not list(m.children())]


@pytest.mark.parametrize("fused", [False, True])
def test_same_network_as_pytorchvideo(fused: bool) -> None:
    """pytorchvideo's slowfast_r50 blocks 0-4 and ours: the same keys, shapes, layers, seeded random weights
    (--no_pretrained --seed), and outputs on small clips, BatchNorms with non-trivial statistics, also fused
    (the pools have no parameters and need 224 x 224 clips: their settings are compared)."""
    hub = pytest.importorskip("pytorchvideo.models.hub")
    torch.manual_seed(3)
    reference = hub.slowfast_r50(pretrained=False).eval()
    torch.manual_seed(3)
    model = SlowFastExtractor(pretrained=False).eval()
    expected_state = reference.state_dict()
    assert {k: v.shape for k, v in expected_state.items()} == {k: v.shape for k, v in pytorchvideo_state_dict().items()}
    mapped, _ = to_extractor_keys(expected_state)
    own = model.state_dict()
    assert list(own) == list(mapped)
    for k, v in own.items():
        assert torch.equal(v, mapped[k]), k
    blocks = torch.nn.Sequential(*reference.blocks[:5])
    assert layer_settings(model.feature_extraction) == layer_settings(blocks)
    assert layer_settings(torch.nn.ModuleList([model.slow_avg_pool, model.fast_avg_pool, model.adp_avg_pool])) == \
        layer_settings(torch.nn.ModuleList([*reference.blocks[5].pool, reference.blocks[6].output_pool]))

    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    load_into(model, to_extractor_keys(reference.state_dict())[0], strict=True)
    if fused:
        model.fuse_for_inference()
    clips = torch.randn(2, 3, 32, 64, 64)
    with torch.no_grad():
        expected = blocks(pack_pathways(clips))
        got = model.feature_extraction(pack_pathways(clips))
    for g, e in zip(got, expected):
        if fused:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
        else:
            assert torch.equal(g, e)


def test_matches_reference_outputs(conformance_dir: Path, detweights) -> None:
    (result,) = check_fixture(conformance_dir / "expected_slowfast.json", detweights)
    assert result.passed, result.to_dict()


def test_state_dict_keys_are_reference_ones(conformance_dir: Path) -> None:
    manifest = load_json(conformance_dir / "manifest_slowfast.json")
    own = {k: list(v.shape) for k, v in SlowFastExtractor(pretrained=False).state_dict().items()}
    assert own == manifest


def test_slow_pathway_frames() -> None:
    clips = torch.arange(32.0).view(1, 1, 32, 1, 1).expand(2, 3, 32, 1, 1)
    slow, fast = pack_pathways(clips)
    assert slow[0, 0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert fast is clips


def test_batch_equals_single_clips(conformance_dir: Path, detweights) -> None:
    """Clip 1 of a batch gives the reference's single-clip values, clip 0 its own single-clip values."""
    model = SlowFastExtractor(pretrained=False)
    manifest = load_json(conformance_dir / "manifest_slowfast.json")
    state, _ = to_extractor_keys(detweights.fill_state_dict(manifest, reference=model.state_dict()))
    load_into(model, state, strict=True)
    model.eval()
    case = load_json(conformance_dir / "expected_slowfast.json")["cases"][0]
    reference_clip = detweights.det_input(*case["input"]["clip"])
    other_clip = detweights.det_input("batch:0", tuple(reference_clip.shape))
    with torch.no_grad():
        slow, fast = model(torch.cat([other_clip, reference_clip]))
        single_slow, single_fast = model(other_clip)
    assert slow.shape == (2, 2048, 1, 1, 1) and fast.shape == (2, 256, 1, 1, 1)
    torch.testing.assert_close(slow[:1], single_slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[:1], single_fast, rtol=1e-5, atol=1e-5)
    assert compare_case(case, {"slow": slow[1:], "fast": fast[1:]}).passed


def reference_weighted_model(conformance_dir: Path, detweights) -> SlowFastExtractor:
    model = SlowFastExtractor(pretrained=False)
    manifest = load_json(conformance_dir / "manifest_slowfast.json")
    state, _ = to_extractor_keys(detweights.fill_state_dict(manifest, reference=model.state_dict()))
    load_into(model, state, strict=True)
    return model.eval()


def test_fused_channels_last_matches_reference_outputs(conformance_dir: Path, detweights) -> None:
    """The extraction form (BatchNorm folded, in-place ReLU and additions, channels-last 3-D) gives the reference values."""
    model = to_channels_last(reference_weighted_model(conformance_dir, detweights).fuse_for_inference())
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    case = load_json(conformance_dir / "expected_slowfast.json")["cases"][0]
    clip = detweights.det_input(*case["input"]["clip"])
    slow, fast = model(clip)
    result = compare_case(case, {"slow": slow, "fast": fast})
    assert result.passed, result.to_dict()
    assert torch.equal(clip, detweights.det_input(*case["input"]["clip"]))  # the input is not written in place


def test_fuse_for_inference_equals_unfused_on_a_small_clip() -> None:
    """Non-trivial BatchNorm statistics (random weights have mean 0, var 1) folded into the convolutions."""
    torch.manual_seed(0)
    model = SlowFastExtractor(pretrained=False).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    clips = torch.randn(2, 3, 32, 64, 64)
    with torch.no_grad():
        expected = model.feature_extraction(pack_pathways(clips))
        got = model.fuse_for_inference().feature_extraction(pack_pathways(clips))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
    assert not any("norm" in k for k in model.state_dict())
    with pytest.raises(RuntimeError, match="eval mode"):
        SlowFastExtractor(pretrained=False).train().fuse_for_inference()


def test_rejects_clips_of_other_length() -> None:
    with pytest.raises(ValueError, match="32"):
        SlowFastExtractor(pretrained=False)(torch.zeros(1, 3, 16, 224, 224))


def test_pretrained_missing_file_raises(isolated_weight_dirs: Path) -> None:
    with pytest.raises(MissingWeightsError, match="SLOWFAST_8x8_R50.pyth"):
        SlowFastExtractor(pretrained=True)


@pytest.mark.parametrize("zip_format", [True, False])  # False: torch's legacy (non-zip) serialization, as pytorchvideo's public .pyth files
def test_pretrained_loads_pytorchvideo_checkpoint(isolated_weight_dirs: Path, zip_format: bool) -> None:
    source = pytorchvideo_state_dict()
    path = isolated_weight_dirs / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": source, "epoch": 196}, path, _use_new_zipfile_serialization=zip_format)
    for model in (SlowFastExtractor(pretrained=True, pretrained_path=path), SlowFastExtractor(pretrained=True)):
        own = model.state_dict()
        assert len(own) == len(source) - 2
        for k, v in own.items():
            assert torch.equal(v, source["blocks." + k[len("feature_extraction."):]]), k


def test_pretrained_weights_are_the_loaded_tensors_not_a_copy(tmp_path: Path, monkeypatch) -> None:
    """The module's parameters are the file's tensors (assigned: no second copy of the weights)."""
    path = tmp_path / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": pytorchvideo_state_dict()}, path)
    loaded = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1])
    own = SlowFastExtractor(pretrained=True, pretrained_path=path).state_dict()
    key = "0.multipathway_blocks.0.conv.weight"
    assert own["feature_extraction." + key].data_ptr() == loaded[0]["model_state"]["blocks." + key].data_ptr()


def test_pretrained_float64_checkpoint_gives_float32_weights(tmp_path: Path) -> None:
    source = {k: v.double() if v.is_floating_point() else v
              for k, v in pytorchvideo_state_dict().items()}
    path = tmp_path / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": source}, path)
    own = SlowFastExtractor(pretrained=True, pretrained_path=path).state_dict()
    assert {v.dtype for v in own.values()} == {torch.float32, torch.int64}
    key = "0.multipathway_blocks.0.conv.weight"
    assert torch.equal(own["feature_extraction." + key], source["blocks." + key].float())


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_pretrained_rejects_a_non_matching_checkpoint(tmp_path: Path, change: str) -> None:
    source = pytorchvideo_state_dict()
    key = "blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight"
    if change == "missing":
        del source[key]
    elif change == "unexpected":
        source["blocks.1.extra.weight"] = torch.zeros(1)
    else:
        source[key] = source[key][:, :1]
    path = tmp_path / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": source}, path)
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key|size mismatch"):
        SlowFastExtractor(pretrained=True, pretrained_path=path)


def test_key_mapping_formats() -> None:
    source = pytorchvideo_state_dict()
    mapped, dropped = to_extractor_keys({"model_state": source})
    assert set(dropped) == {"blocks.6.proj.weight", "blocks.6.proj.bias"}
    assert set(mapped) == set(SlowFastExtractor(pretrained=False).state_dict())
    again, none_dropped = to_extractor_keys(mapped)
    assert again.keys() == mapped.keys() and none_dropped == {}


def test_preprocess_constant_frames() -> None:
    frames = np.full((4, 90, 160, 3), 200, dtype=np.uint8)
    out = preprocess_frames(frames)
    assert out.shape == (3, 4, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full_like(out, (200 / 255 - 0.45) / 0.225))
    torch.testing.assert_close(preprocess_frames(frames[..., ::-1]), out)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(frames.astype(np.float32))


def test_preprocess_close_to_reference_pil_pipeline() -> None:
    """The reference: PIL Resize([224, 224]) -> ToTensor -> Normalize(0.45, 0.225); at most one grey level apart.
    Downscaled (any video frame of at least 224 px a side): on under 1% of the values (resizing in float and
    rounding, as before, differed on about 12%); a side enlarged: on about a quarter."""
    image_module = pytest.importorskip("PIL.Image")
    from torchvision import transforms

    reference = transforms.Compose([transforms.Resize([224, 224]), transforms.ToTensor(),
                                    transforms.Normalize([0.45] * 3, [0.225] * 3)])
    rng = np.random.default_rng(0)
    for shape, differing in (((2, 300, 170, 3), 0.3), ((2, 540, 960, 3), 0.01)):
        frames = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = torch.stack([reference(image_module.fromarray(f)) for f in frames], dim=1)
        diff = (preprocess_frames(torch.from_numpy(frames)) - expected).abs()
        assert diff.max() <= 1 / 255 / 0.225 + 1e-5
        assert (diff > 1e-5).float().mean() < differing
