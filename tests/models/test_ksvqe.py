"""KSVQE: equivalence with the reference network, checkpoint handling, weights, training gradients."""
from __future__ import annotations

import logging
from typing import Callable

import pytest
import torch

from kvq.core.checkpoint import CheckpointMismatchError, load_into
from kvq.eval.conformance import compare_case
from models.registry import BACKBONES
from kvq.core.weights import MissingWeightsError
from models.ksvqe import KSVQE, MODULATION_MODULES, key_frames
from models.modulation import distortion_contrastive_loss
from models.network import VQANetwork
from models.swin3d_backbone import SWIN_PREFIXES
from tests.conftest import load_json

FROZEN_PREFIXES = ("CLIP_tool.visual.", "distortion_tool.")


def _no_disk(*args, **kwargs):
    raise AssertionError("pretrained=False must not read any weight file")


@pytest.fixture(scope="module")
def reference_model(conformance_dir, detweights) -> Callable[[int], VQANetwork]:
    """tuning_stage -> VQANetwork(KSVQE) built with pretrained=False and holding the conformance weights."""
    cache: dict[int, VQANetwork] = {}

    def get(tuning_stage: int) -> VQANetwork:
        if tuning_stage not in cache:
            expected = load_json(conformance_dir / f"expected_ksvqe_ts{tuning_stage}.json")
            with pytest.MonkeyPatch.context() as mp:
                for target in ("torch.load", "torch.jit.load", "models.ksvqe.resolve_weight",
                               "models.clip_visual.resolve_weight", "models.contrique.resolve_weight"):
                    mp.setattr(target, _no_disk)
                model = VQANetwork({"KSVQE": {"backbone": {**expected["config_backbone"], "pretrained": False},
                                              "head": {}}})
            manifest = load_json(conformance_dir / expected["manifest"])
            own = model.state_dict()
            assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v) for k, v in manifest.items()}
            report = load_into(model, detweights.fill_state_dict(manifest, reference=own))
            assert not report.missing and not report.unexpected and not report.dropped
            cache[tuning_stage] = model.eval()
        return cache[tuning_stage]

    return get


def _batch(detweights, case: dict) -> dict[str, torch.Tensor]:
    batch = {k: detweights.det_input(*v) for k, v in case["input"].items() if k != "dis_label"}
    batch["dis_label"] = torch.tensor(case["input"]["dis_label"])
    return batch


@pytest.mark.parametrize("tuning_stage,frames", [
    pytest.param(1, 8, id="ts1-T8"),
    pytest.param(2, 8, id="ts2-T8"),
    pytest.param(1, 32, id="ts1-T32", marks=pytest.mark.slow),
    pytest.param(2, 32, id="ts2-T32", marks=pytest.mark.slow),
])
def test_matches_reference(reference_model, conformance_dir, detweights, tuning_stage, frames):
    model = reference_model(tuning_stage).eval()
    cases = load_json(conformance_dir / f"expected_ksvqe_ts{tuning_stage}.json")["cases"]
    case = next(c for c in cases if c["input"]["fragment"][1][2] == frames)
    with torch.no_grad():
        batch = _batch(detweights, case)
        feats, tokens = model.KSVQE_backbone(batch)
        score = model.KSVQE_head(feats)
        loss = distortion_contrastive_loss(tokens, batch["dis_label"])
    result = compare_case(case, {"features": feats, "score": score, "contrastive_loss": loss})
    assert result.passed, result.failures


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_matches_reference_on_cuda(reference_model, conformance_dir, detweights, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = reference_model(1).eval().cuda()
    try:
        case = load_json(conformance_dir / "expected_ksvqe_ts1.json")["cases"][1]
        batch = {k: v.cuda() for k, v in _batch(detweights, case).items()}
        with torch.no_grad():
            out = model(batch)
            out["contrastive_loss"] = distortion_contrastive_loss(out["distortion_tokens"], batch["dis_label"])
        result = compare_case({k: case[k] for k in ("score", "contrastive_loss")},
                              {k: out[k].cpu() for k in ("score", "contrastive_loss")})
        assert result.passed, result.failures
    finally:
        model.cpu()


def test_registered_with_vqa_head():
    assert BACKBONES.get("KSVQE") is KSVQE
    assert KSVQE.head_type == "VQAHead" and KSVQE.head_defaults == {"in_channels": 768, "hidden_channels": 64}


def test_key_frames_and_groups():
    idx, group = key_frames(32)
    assert idx == [0, 7, 15, 23]
    assert group.tolist() == [0] * 7 + [1] * 8 + [2] * 8 + [3] * 9
    idx, group = key_frames(8)
    assert idx == [0, 1, 3, 5] and group.tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    for bad in (2, 5):
        with pytest.raises(ValueError, match="even number of frames"):
            key_frames(bad)


def test_tuning_stage_mismatch_is_a_clear_error(reference_model):
    trained = {"state_dict": {f"module.{k}": v for k, v in reference_model(1).state_dict().items()}}
    with pytest.raises(CheckpointMismatchError, match="tuning_stage=1 but the config asks for tuning_stage=2"):
        load_into(reference_model(2), trained)


def test_partial_checkpoint_names_the_parts_left_initialised(reference_model, caplog):
    """Like KSVQE_techniqual_pretrainonLSVQ.pth: no modulation modules (nor head) in the file."""
    model = reference_model(1)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(tuple(f"KSVQE_backbone.{m}." for m in MODULATION_MODULES) + ("KSVQE_head.",))}
    with caplog.at_level(logging.WARNING):
        report = load_into(model, state)
    assert report.missing and all(k.split(".")[1] in MODULATION_MODULES or k.startswith("KSVQE_head.")
                                  for k in report.missing)
    message = next(r.getMessage() for r in caplog.records if r.name == "models.ksvqe")
    assert "keep their initialisation" in message
    assert all(m in message for m in MODULATION_MODULES)


def test_train_step_reaches_only_trainable_parts(reference_model):
    model = reference_model(1)
    backbone = model.KSVQE_backbone
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in backbone.named_parameters() if not n.startswith(FROZEN_PREFIXES)}
    model.train()
    try:
        assert not backbone.distortion_tool.training
        gen = torch.Generator().manual_seed(0)
        batch = {"fragment": torch.randn(1, 3, 4, 288, 288, generator=gen),
                 "resize_video": torch.randn(1, 3, 4, 112, 112, generator=gen),
                 "dis_label": torch.tensor([2])}
        out = model(batch)
        loss = distortion_contrastive_loss(out["distortion_tokens"], batch["dis_label"])
        (out["score"].sum() + 0.3 * loss).backward()
        grads = {n: p.grad for n, p in backbone.named_parameters()}
        assert all(grads[n] is None for n in grads if n.startswith(FROZEN_PREFIXES))
        assert all(grads[n] is not None for n in trainable)
        for i in range(len(backbone.CLIP_tool.adapter_layer)):  # reached through the region selection
            assert sum(grads[f"CLIP_tool.adapter_layer.{i}.{j}.weight"].abs().sum() for j in (0, 2)) > 0
        assert all(p.grad is not None for p in model.KSVQE_head.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_missing_weight_files_raise_before_building(tmp_path):
    present = tmp_path / "present.pth"
    present.write_bytes(b"")
    with pytest.raises(MissingWeightsError, match="swin_tiny_patch244_window877_kinetics400_1k.pth"):
        KSVQE(pretrained=True, swin_path=tmp_path / "absent.pth", clip_path=present, contrique_path=present)
    with pytest.raises(MissingWeightsError, match="ViT-B-16.pt"):
        KSVQE(pretrained=True, swin_path=present, clip_path=tmp_path / "absent.pt", contrique_path=present)
    with pytest.raises(MissingWeightsError, match="CONTRIQUE_checkpoint25.tar"):
        KSVQE(pretrained=True, swin_path=present, clip_path=present, contrique_path=tmp_path / "absent.tar")


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="tuning_stage"):
        KSVQE(pretrained=False, tuning_stage=5)
    with pytest.raises(ValueError, match="multinomial"):
        KSVQE(pretrained=False, sample_type="multinomial")


def test_pretrained_weights_are_loaded_and_not_reinitialised(reference_model, tmp_path):
    """OpenAI CLIP (fp16 state dict), CONTRIQUE (.tar) and Kinetics Swin files made from a model:
    after construction the frozen CLIP/CONTRIQUE weights are exactly the files' (no re-init)."""
    source = reference_model(1).KSVQE_backbone.state_dict()
    clip = {f"visual.{k[len('CLIP_tool.visual.'):]}": v.half() for k, v in source.items()
            if k.startswith("CLIP_tool.visual.")}
    contrique = {k[len("distortion_tool."):]: v for k, v in source.items() if k.startswith("distortion_tool.")}
    swin = {f"backbone.{k}": v for k, v in source.items()
            if k.startswith(SWIN_PREFIXES) and "fragment_position_bias_table" not in k}
    paths = {name: tmp_path / f"{name}.pth" for name in ("clip", "contrique", "swin")}
    torch.save(clip, paths["clip"])
    torch.save(contrique, paths["contrique"])
    torch.save({"state_dict": swin}, paths["swin"])
    model = KSVQE(pretrained=True, swin_path=paths["swin"], clip_path=paths["clip"],
                  contrique_path=paths["contrique"])
    own = model.state_dict()
    for k, v in clip.items():
        assert torch.equal(own[f"CLIP_tool.{k}"], v.float()), k
    for k, v in contrique.items():
        assert torch.equal(own[f"distortion_tool.{k}"], v), k
    for k, v in swin.items():
        name = k[len("backbone."):]
        assert torch.equal(own[name], v), name
        forked = name.replace("relative_position_bias_table", "fragment_position_bias_table")
        if forked != name and forked in own:
            assert torch.equal(own[forked], v), forked
