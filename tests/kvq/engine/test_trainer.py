"""kvq.engine.trainer: which weights the kept checkpoints hold (config `keep`)."""
from pathlib import Path

import pytest
import torch

from kvq.config import ConfigError, validate
from kvq.engine.train_state import bare
from kvq.engine.trainer import Trainer, TrainOptions
from tests.media import make_tiny_dataset, simplevqa_config

EPOCHS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), features=False)


def config(root: Path, **top) -> dict:
    """The tiny SimpleVQA config on cached spatial features (heads only: fast epochs)."""
    cfg = simplevqa_config(root, epochs=EPOCHS, freeze_backbone=True, cache_features=True, **top)
    for split in cfg["data"].values():
        del split["args"]["data_prefix_3D"]
    cfg["model"]["args"]["simpleVQA"]["backbone"]["motion_channels"] = 0
    return cfg


def assert_same_weights(state: dict, model: torch.nn.Module) -> None:
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_keep_last_saves_the_final_weights_of_model_and_ema(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(validate(config(data, keep="last")), TrainOptions(output_dir=tmp_path, progress=False),
                      torch.device("cpu"))
    kept = trainer.train()
    assert set(kept) == {"n", "s"} and all(m["epoch"] == EPOCHS - 1 for m in kept.values())
    assert set(trainer.best) == {"n", "s"}  # the bests are still tracked and reported
    final = trainer.history[-1]
    for tag, model in (("n", bare(trainer.model)), ("s", trainer.ema.module)):
        state = torch.load(trainer.ckpt_path(tag), weights_only=False)
        assert_same_weights(state["state_dict"], model)
        assert state["epoch"] == EPOCHS - 1
        assert state["validation_results"]["SROCC"] == pytest.approx(final[f"{tag}_SROCC"])
        assert "calibration" in state


def test_keep_best_saves_the_best_val_epoch(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(validate(config(data)), TrainOptions(output_dir=tmp_path, progress=False), torch.device("cpu"))
    assert trainer.cfg["keep"] == "best"
    kept = trainer.train()
    assert kept == trainer.best
    for tag in ("n", "s"):
        assert torch.load(trainer.ckpt_path(tag), weights_only=False)["epoch"] == trainer.best[tag]["epoch"]


def test_keep_last_after_resume(data: Path, tmp_path: Path) -> None:
    """Stopped before the final epoch: no kept checkpoint yet; resumed: the final weights are kept."""
    cfg = validate(config(data, keep="last"))
    first = Trainer(cfg, TrainOptions(output_dir=tmp_path, progress=False, stop_after=EPOCHS - 1), torch.device("cpu"))
    assert first.train() == {}
    assert not first.ckpt_path("n").exists() and not first.ckpt_path("s").exists()
    resumed = Trainer(cfg, TrainOptions(output_dir=tmp_path, progress=False, resume_from=first.last_path),
                      torch.device("cpu"))
    kept = resumed.train()
    assert all(m["epoch"] == EPOCHS - 1 for m in kept.values())
    assert_same_weights(torch.load(resumed.ckpt_path("n"), weights_only=False)["state_dict"], bare(resumed.model))
    assert torch.load(resumed.last_path, weights_only=False)["final"] == kept


def test_keep_takes_best_or_last(data: Path) -> None:
    with pytest.raises(ConfigError, match="keep"):
        validate(config(data, keep="first"))
