"""cache_features: heads trained on frozen backbone features computed once per video."""
from pathlib import Path

import pytest
import torch
import yaml

import test as test_script
import train
from datasets import build_dataset, collate
from kvq.config import ConfigError, validate
from kvq.eval.predict import clip_inputs, predict
from kvq.api.scoring import train_scoring_spec
from kvq.api.scorer import load_scorer
from kvq.engine.trainer import Trainer, TrainOptions
from tests.media import make_tiny_dataset, simplevqa_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), features=False)


def cached_config(root: Path, epochs: int = 2, **top) -> dict:
    """The tiny SimpleVQA config, spatial features only (no SlowFast files), frozen and cached."""
    cfg = simplevqa_config(root, epochs=epochs, freeze_backbone=True, cache_features=True, **top)
    for split in cfg["data"].values():
        del split["args"]["data_prefix_3D"]
    cfg["model"]["args"]["simpleVQA"]["backbone"]["motion_channels"] = 0
    return cfg


def test_cached_features_are_the_head_inputs_of_the_uncached_path(data: Path, tmp_path: Path) -> None:
    """The train cache holds what the backbone gives on the train videos scored as test.py scores
    them, and cached validation scores are those of the full model on the raw val videos."""
    trainer = Trainer(validate(cached_config(data)), TrainOptions(output_dir=tmp_path, progress=False),
                      torch.device("cpu"))
    model = trainer.model.eval()
    dataset = build_dataset(train_scoring_spec(trainer.cfg))
    cache = trainer.caches["train"]
    assert cache.names == [r.video_name for r in dataset.records]
    for i in range(len(dataset)):
        inputs, n = clip_inputs(collate([dataset[i]]), torch.device("cpu"))
        with torch.no_grad():
            expected = model.backbone("simpleVQA")(inputs)
        feats, m = cache.batch(torch.tensor([i]), torch.device("cpu"))
        assert m == n
        torch.testing.assert_close(feats["simpleVQA"], expected, rtol=0, atol=0)
    cached = trainer.caches["val"].predict(model, torch.device("cpu"))
    raw = predict(model, trainer.val_loader, torch.device("cpu"), progress=False)
    assert cached.names == raw.names and cached.labels == raw.labels
    assert cached.scores == pytest.approx(raw.scores, abs=1e-5)


def test_cached_training_runs_each_backbone_once_per_video(data: Path, tmp_path: Path, monkeypatch) -> None:
    """Two epochs, validation and calibration: the backbone sees each train and val video once."""
    from models.simplevqa import SimpleVQABackbone

    calls = []
    forward = SimpleVQABackbone.forward
    monkeypatch.setattr(SimpleVQABackbone, "forward", lambda self, batch: calls.append(1) or forward(self, batch))
    trainer = Trainer(validate(cached_config(data)), TrainOptions(output_dir=tmp_path, progress=False),
                      torch.device("cpu"))
    best = trainer.train()
    assert len(calls) == len(trainer.train_set) + len(trainer.val_set)
    assert {"n", "s"} <= set(best) and len(trainer.history) == 2
    assert "calibration" in torch.load(trainer.ckpt_path("n"), weights_only=False)


def test_cached_training_checkpoint_scores_raw_videos(data: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(yaml.safe_dump(cached_config(data, ema=False)))
    out = tmp_path / "out"
    assert train.main(["-o", str(cfg_path), "-r", str(out), "--log_dir", str(out / "log"), "--gpu_id", "cpu",
                       "--no_progress"]) == 0
    best = out / "tiny_head_val-ltest_n_finetuned.pth"
    scores = tmp_path / "scores.csv"
    assert test_script.main(["--checkpoint", str(best), "--videos", str(data / "v0.mp4"), str(data / "v1.mp4"),
                             "--output", str(scores), "--gpu_id", "cpu", "--no_progress"]) == 0
    rows = scores.read_text().split()
    assert rows[0].startswith("filename,score") and len(rows) == 3
    scorer = load_scorer(best, device="cpu")
    result = scorer.score_many([data / "v0.mp4", data / "v1.mp4"], progress=False)
    assert [float(r.split(",")[2]) for r in rows[1:]] == pytest.approx(result.scores, abs=1e-5)


def test_cache_features_needs_a_frozen_backbone(data: Path, tmp_path: Path) -> None:
    cfg = validate({**cached_config(data), "freeze_backbone": False})
    with pytest.raises(ConfigError, match="cache_features needs freeze_backbone"):
        Trainer(cfg, TrainOptions(output_dir=tmp_path, progress=False), torch.device("cpu"))


def test_standardized_head_takes_the_train_features_statistics(data: Path, tmp_path: Path) -> None:
    cfg = cached_config(data, epochs=1)
    cfg["model"]["args"]["simpleVQA"]["head"] = {"standardize": True}
    trainer = Trainer(validate(cfg), TrainOptions(output_dir=tmp_path, progress=False), torch.device("cpu"))
    head = trainer.model.simpleVQA_head
    feats = trainer.caches["train"].features["simpleVQA"].flatten(0, -2)
    torch.testing.assert_close(head.feature_mean, feats.mean(0))
    torch.testing.assert_close(head.feature_std, feats.std(0).clamp_min(1e-6))
    trainer.train()
    state = torch.load(trainer.ckpt_path("n"), weights_only=False)["state_dict"]
    torch.testing.assert_close(state["simpleVQA_head.feature_mean"], feats.mean(0))
    cfg["cache_features"] = False
    with pytest.raises(ConfigError, match="head.standardize needs cache_features"):
        Trainer(validate(cfg), TrainOptions(output_dir=tmp_path / "b", progress=False), torch.device("cpu"))
