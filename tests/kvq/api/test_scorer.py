"""The Python API: load_scorer from a checkpoint (config inside) or a config; score, score_many."""
import logging
from pathlib import Path

import pytest
import torch
import yaml

from datasets.decoding import VideoDecodeError
from kvq import load_scorer
from kvq.eval.calibration import Calibration, fit_calibration
from tests.media import make_video

VIEW = {"fragments_h": 7, "fragments_w": 7, "fsize_h": 32, "fsize_w": 32, "aligned": 8, "clip_len": 8,
        "frame_interval": 1, "num_clips": 1}
MODEL_ARGS = {"swin_tiny_grpb": {"backbone": {"pretrained": False}, "head": {}}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    make_video(root / "a.mp4", size="64x96", frames=12)
    make_video(root / "b.mp4", size="96x64", frames=12, source="mandelbrot")
    (root / "broken.mp4").write_bytes(b"not a video")
    return root


def fast_config(**top) -> dict:
    return {"name": "fast", "num_workers": 0, "model": {"type": "swin_tiny_grpb", "args": MODEL_ARGS}, **top,
            "data": {"test": {"type": "ViewDecompositionDataset_KVQ",
                              "args": {"anno_file": "unused.csv", "sample_types": {"technical": VIEW}}}}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A FAST-VQA checkpoint laid out as train.py writes it: weights, validated config, calibration."""
    from kvq.config import validate
    from models import VQANetwork

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fast_head_val-ltest_n_finetuned.pth"
    cal = fit_calibration([-1.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.5, 4.0], "test MOS", (1.0, 5.0))
    torch.save({"state_dict": VQANetwork(MODEL_ARGS).state_dict(), "config": dict(validate(fast_config())),
                "epoch": 0, "calibration": cal.to_dict()}, path)
    return path


def test_checkpoint_alone_scores_with_its_calibration(checkpoint: Path, clips: Path) -> None:
    scorer = load_scorer(checkpoint, device="cpu")
    assert scorer.scale == "test MOS"
    result = scorer.score_many([clips / "a.mp4", clips / "broken.mp4", clips / "b.mp4"], batch_size=2,
                               progress=False)
    assert result.paths == [str(clips / "a.mp4"), str(clips / "b.mp4")] and len(result) == 2
    assert [e[0] for e in result.errors] == [str(clips / "broken.mp4")]
    assert result.scores == result.calibrated
    assert result.calibrated == pytest.approx(scorer.calibration.apply(result.raw).tolist())
    assert all(1.0 <= s <= 5.0 for s in result.scores)
    assert scorer.score(clips / "b.mp4") == pytest.approx(result.scores[1], abs=1e-5)


def test_score_names_the_file_it_cannot_read(checkpoint: Path, clips: Path) -> None:
    scorer = load_scorer(checkpoint, device="cpu")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        scorer.score(clips / "broken.mp4")
    with pytest.raises(VideoDecodeError, match="missing.mp4: no such file"):
        scorer.score("missing.mp4", root=clips)


def test_config_path_uses_test_load_path_and_raw_scores_without_calibration(tmp_path: Path, clips: Path,
                                                                            caplog) -> None:
    from models import VQANetwork

    torch.manual_seed(0)
    bare = tmp_path / "reference.pth"
    torch.save({"state_dict": VQANetwork(MODEL_ARGS).state_dict()}, bare)
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump(fast_config(test_load_path=str(bare))))
    with caplog.at_level(logging.WARNING, logger="kvq.eval.calibration"):
        scorer = load_scorer(cfg, device="cpu")
    assert "has no calibration" in caplog.text and scorer.scale == "raw"
    result = scorer.score_many(["a.mp4"], root=clips, progress=False)
    assert result.calibrated is None and result.scores == result.raw and result.paths == ["a.mp4"]
    with pytest.raises(ValueError, match="holds no config"):
        load_scorer(bare)


def test_trained_checkpoint_scores_like_test_py(trained, tmp_path: Path, monkeypatch) -> None:
    """A train.py checkpoint alone (SimpleVQA, SlowFast features made on the way) gives the
    scores `test.py --videos` writes with the same SlowFast network."""
    import test as test_script
    from kvq import SlowFastOptions

    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    scorer = load_scorer(ckpt, device="cpu", slowfast=SlowFastOptions(pretrained=False, cache_dir=tmp_path / "sf"))
    cal = Calibration.from_dict(torch.load(ckpt, weights_only=False)["calibration"])
    result = scorer.score_many(["v0.mp4", "v5.mp4"], root=data, progress=False)
    assert result.calibrated == pytest.approx(cal.apply(result.raw).tolist())
    out = tmp_path / "s.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--videos", str(data / "v0.mp4"),
                             str(data / "v5.mp4"), "--output", str(out), "--slowfast_random", "--features",
                             str(tmp_path / "sf2"), "--no_progress"]) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert result.raw == pytest.approx([float(r[1]) for r in rows], abs=1e-5)
    monkeypatch.chdir(data)
    assert scorer.score("v5.mp4") == pytest.approx(result.scores[1], abs=1e-5)


@pytest.mark.parametrize("drop", ["all", "one head key"])
def test_checkpoint_that_does_not_fill_the_model_is_refused(checkpoint: Path, tmp_path: Path, drop: str) -> None:
    """Scoring never runs with random parts: an empty state dict, or one lacking a single head
    key, is a CheckpointMismatchError naming how many keys are missing and the first ones."""
    from kvq.core.checkpoint import CheckpointMismatchError

    obj = torch.load(checkpoint, weights_only=False)
    state = obj["state_dict"]
    head_key = next(k for k in state if k.startswith("swin_tiny_grpb_head."))
    kept = {} if drop == "all" else {k: v for k, v in state.items() if k != head_key}
    partial = tmp_path / "partial.pth"
    torch.save({**obj, "state_dict": kept}, partial)
    learned = sum(v.is_floating_point() for v in state.values())  # integer buffers: the model's own
    expected = f"{learned if drop == 'all' else 1} of {len(state)} model keys are not in the checkpoint"
    with pytest.raises(CheckpointMismatchError, match=f"partial.pth: .*{expected}"):
        load_scorer(partial, device="cpu")
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump(fast_config(test_load_path=str(partial))))
    with pytest.raises(CheckpointMismatchError, match=head_key if drop != "all" else expected):
        load_scorer(cfg, device="cpu")


def test_unexpected_checkpoint_keys_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    from kvq.core.checkpoint import CheckpointMismatchError

    obj = torch.load(checkpoint, weights_only=False)
    extra = tmp_path / "extra.pth"
    torch.save({**obj, "state_dict": {**obj["state_dict"], "other_head.fc.weight": torch.zeros(1)}}, extra)
    with pytest.raises(CheckpointMismatchError, match=r"1 checkpoint keys are not in the model \(other_head.fc"):
        load_scorer(extra, device="cpu")
