"""train.py end to end on tiny data (CPU): outputs, exact resume, atomic checkpoints."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import train
from kvq.core import io as kvq_io
from kvq.core.checkpoint import CheckpointMismatchError
from kvq.config import ConfigError
from tests.media import make_tiny_dataset, simplevqa_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(cfg_path: Path, out: Path, *extra: str) -> None:
    assert train.main(["-o", str(cfg_path), "-r", str(out), "--log_dir", str(out / "log"), "--gpu_id", "cpu",
                       "--no_progress", *extra]) == 0


def test_training_writes_checkpoints_plots_and_log(data: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1))
    run(cfg, tmp_path / "out")
    out = tmp_path / "out"
    best = torch.load(out / "tiny_head_val-ltest_n_finetuned.pth", weights_only=False)
    assert set(best) >= {"state_dict", "validation_results", "config"}
    assert set(best["validation_results"]) >= {"SROCC", "PLCC", "KROCC", "RMSE", "epoch"}
    assert (out / "tiny_head_val-ltest_s_finetuned.pth").is_file()
    assert (out / "tiny_val-ltest_curves.png").stat().st_size > 0
    assert list((out / "plots").glob("*.png"))
    logs = list((out / "log").glob("tiny_*.log"))
    assert logs and "epoch 0:" in logs[0].read_text()


def test_resume_gives_the_same_weights_as_straight_training(data: Path, tmp_path: Path) -> None:
    straight = write_config(tmp_path / "two.yml", simplevqa_config(data, epochs=2))
    run(straight, tmp_path / "a")
    run(straight, tmp_path / "b", "--stop_after", "1")
    run(straight, tmp_path / "b", "--resume_from", str(tmp_path / "b" / "tiny_val-ltest_last.pth"))
    a = torch.load(tmp_path / "a" / "tiny_val-ltest_last.pth", weights_only=False)
    b = torch.load(tmp_path / "b" / "tiny_val-ltest_last.pth", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert a["history"][-1]["n_SROCC"] == b["history"][-1]["n_SROCC"]


def test_kill_during_checkpoint_save_keeps_previous_file(data: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1))
    run(cfg, tmp_path / "out")
    last = tmp_path / "out" / "tiny_val-ltest_last.pth"
    before = last.read_bytes()

    def killed_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", killed_save)
    with pytest.raises(KeyboardInterrupt):
        kvq_io.atomic_torch_save({"x": 1}, last)
    assert last.read_bytes() == before
    assert not list(last.parent.glob(".*.tmp"))
    monkeypatch.undo()
    assert "state_dict" in torch.load(last, weights_only=False)


def test_frozen_backbone_trains_only_the_head(data: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1, freeze_backbone=True, ema=False))
    run(cfg, tmp_path / "out")
    state = torch.load(tmp_path / "out" / "tiny_val-ltest_last.pth", weights_only=False)
    groups = state["optimizer"]["param_groups"]
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == 4  # head: 2 Linear layers (weight + bias)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_and_tensorboard(data: Path, tmp_path: Path, amp: str) -> None:
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1, ema=False, amp=amp, tensorboard=True))
    run(cfg, tmp_path / "out")
    state = torch.load(tmp_path / "out" / "tiny_val-ltest_last.pth", weights_only=False)
    record = state["history"][0]
    assert all(torch.isfinite(torch.tensor(v)) for k, v in record.items() if k != "epoch")
    events = list((tmp_path / "out" / "log" / "tensorboard" / "tiny").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_training_stores_a_train_split_calibration_in_the_best_checkpoints(data: Path, tmp_path: Path) -> None:
    """Each best checkpoint gets a calibration fitted on the train split (scored deterministically),
    which test.py's calibrated column applies; a refit on test.py's train-split scores agrees."""
    import csv

    import test as test_script
    from kvq.eval.calibration import Calibration, fit_calibration

    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1, mos_scale={"name": "tiny MOS"}))
    run(cfg, tmp_path / "out")
    out = tmp_path / "out"
    for tag in ("n", "s"):
        ckpt = torch.load(out / f"tiny_head_val-ltest_{tag}_finetuned.pth", weights_only=False)
        cal = Calibration.from_dict(ckpt["calibration"])
        assert (cal.scale, cal.mos_min, cal.mos_max, cal.n) == ("tiny MOS", 1.0, 4.0, 6)
    last = torch.load(out / "tiny_val-ltest_last.pth", weights_only=False)
    assert set(last["best_calibration"]) == {"n", "s"}
    best = out / "tiny_head_val-ltest_n_finetuned.pth"
    cal = Calibration.from_dict(torch.load(best, weights_only=False)["calibration"])
    pred = tmp_path / "train_scores.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(best), "--split", "train", "--calibrated",
                             "--output", str(pred), "--no_progress"]) == 0
    with open(pred, newline="") as f:
        rows = list(csv.DictReader(f))
    raw = [float(r["score"]) for r in rows]
    np.testing.assert_allclose([float(r["calibrated_score"]) for r in rows], cal.apply(raw), atol=2e-6)
    labels = {line.split(",")[0]: float(line.split(",")[1]) for line in (data / "train.csv").read_text().split()[1:]}
    refit = fit_calibration(raw, [labels[r["filename"]] for r in rows], "tiny MOS", (1.0, 4.0))
    assert refit.kind == cal.kind
    np.testing.assert_allclose(refit.apply(raw), cal.apply(raw), atol=1e-3)


def test_calibration_can_be_disabled(data: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1, ema=False,
                                                            calibration={"enabled": False}))
    run(cfg, tmp_path / "out")
    assert "calibration" not in torch.load(tmp_path / "out" / "tiny_head_val-ltest_n_finetuned.pth",
                                           weights_only=False)


def test_unlabeled_training_file_is_refused_before_training(data: Path, tmp_path: Path) -> None:
    names = [line.split(",")[0] for line in (data / "train.csv").read_text().splitlines()[1:]]
    (data / "train_unlabeled.csv").write_text("filename\n" + "\n".join(names) + "\n")
    cfg = simplevqa_config(data, epochs=1)
    cfg["data"]["train"]["args"]["anno_file"] = str(data / "train_unlabeled.csv")
    with pytest.raises(ConfigError, match=r"train_unlabeled.csv\): 6 of 6 videos have no score"):
        run(write_config(tmp_path / "c.yml", cfg), tmp_path / "out")


def test_resume_from_a_corrupt_file_names_it(data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "last.pth"
    bad.write_bytes(b"not a checkpoint")
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1))
    with pytest.raises(CheckpointMismatchError, match="last.pth: not a readable PyTorch checkpoint"):
        run(cfg, tmp_path / "out", "--resume_from", str(bad))


def test_validation_scores_model_and_ema_in_one_pass(data: Path, tmp_path: Path, monkeypatch) -> None:
    """Each val video decoded once for both models; each model's metrics as predicted alone."""
    from kvq.config import load_config
    from kvq.eval.predict import predict
    from kvq.eval.correlations import correlation_metrics
    from kvq.engine.trainer import Trainer, TrainOptions

    cfg = load_config(write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1, save_model=False)))
    trainer = Trainer(cfg, TrainOptions(output_dir=tmp_path / "out", progress=False), torch.device("cpu"))
    with torch.no_grad():  # the EMA differs from the model
        next(trainer.ema.module.parameters()).add_(0.5)
    alone = {tag: predict(m, trainer.val_loader, torch.device("cpu"), progress=False)
             for tag, m in (("n", trainer.model), ("s", trainer.ema.module))}
    reads = []
    get = type(trainer.val_set).__getitem__
    monkeypatch.setattr(type(trainer.val_set), "__getitem__", lambda self, i: reads.append(i) or get(self, i))
    record = trainer.validate(0)
    assert sorted(reads) == list(range(len(trainer.val_set)))
    assert alone["n"].scores != alone["s"].scores
    for tag, preds in alone.items():
        metrics = correlation_metrics(preds.scores, preds.labels, cfg["metrics_fit"])
        assert record[f"{tag}_SROCC"] == metrics["SROCC"] and record[f"{tag}_PLCC"] == metrics["PLCC"], tag


def test_resume_with_another_amp_setting(data: Path, tmp_path: Path) -> None:
    """A state saved without loss scaling (amp off: empty GradScaler state) resumes with fp16, and back."""
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=3, ema=False))
    run(cfg, tmp_path / "out", "--stop_after", "1")
    last = tmp_path / "out" / "tiny_val-ltest_last.pth"
    run(cfg, tmp_path / "out", "--stop_after", "1", "--resume_from", str(last), "--set", "amp=fp16")
    assert torch.load(last, weights_only=False)["scaler"]  # fp16: a scale was saved
    run(cfg, tmp_path / "out", "--resume_from", str(last), "--set", "amp='off'")
    assert torch.load(last, weights_only=False)["epoch"] == 2


def test_cuda_random_state_is_the_current_device_s(monkeypatch) -> None:
    """Saved: the current GPU's generator only, so a run resumes where fewer GPUs are visible."""
    from kvq.engine import train_state as engine

    states = [torch.full((4,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": states[torch.cuda.current_device()])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append(state))
    saved = engine.rng_state()
    assert torch.equal(saved["cuda"], states[3])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)  # resumed on a machine with one GPU
    engine.set_rng_state(saved)
    assert [int(s[0]) for s in restored] == [3]


def test_training_batches_are_full_and_calibration_scores_one_video_at_a_time(data: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    from kvq.engine import evaluation
    from kvq.engine import trainer as engine

    sizes, loaders = [], []
    real_plcc, real_predict, real_each = engine.plcc_loss, evaluation.predict, evaluation.predict_each
    monkeypatch.setattr(engine, "plcc_loss", lambda pred, label: sizes.append(len(pred)) or real_plcc(pred, label))
    monkeypatch.setattr(evaluation, "predict", lambda model, loader, *a, **k: loaders.append(
        (k["desc"], loader.batch_size)) or real_predict(model, loader, *a, **k))
    monkeypatch.setattr(evaluation, "predict_each", lambda models, loader, *a, **k: loaders.append(
        (k["desc"], loader.batch_size)) or real_each(models, loader, *a, **k))  # validation: model and EMA
    cfg = write_config(tmp_path / "c.yml", simplevqa_config(data, epochs=1, ema=False, batch_size=4))
    run(cfg, tmp_path / "out")
    assert sizes == [4]  # 6 videos: one batch of 4; the last 2 (a batch without a useful PLCC loss) dropped
    assert {desc.split()[0] for desc, _ in loaders} == {"validate", "calibrate"}
    assert all(batch_size == 1 for _, batch_size in loaders)  # calibration bounded like validation
    sizes.clear()
    run(cfg, tmp_path / "out", "--set", "batch_size=7", "--overwrite")
    assert sizes == [6]  # a train list smaller than batch_size: one batch of all its videos
    logs = "".join(f.read_text() for f in (tmp_path / "out" / "log").glob("*.log"))
    assert "gives 6 videos, fewer than batch_size 7: training uses batches of 6" in logs


def test_mixed_orientations_train_and_score_in_one_batch(tmp_path: Path) -> None:
    """Native-size frames (resize: null) of portrait and landscape videos share batches (cache_features
    false): training runs, and scoring in batches of 4 gives each video the score it gets alone."""
    from kvq.api.scorer import load_scorer
    from tests.media import make_mixed_orientation_dataset, native_size_config

    data = make_mixed_orientation_dataset(tmp_path / "data")
    cfg = native_size_config(data, ema=False, batch_size=4, calibration={"enabled": False})
    run(write_config(tmp_path / "c.yml", cfg), tmp_path / "out")
    scorer = load_scorer(tmp_path / "out" / "tiny_head_val-ltest_n_finetuned.pth", device="cpu")
    videos = ["vp0.mp4", "vl0.mp4", "vp1.mp4", "vl1.mp4"]
    together = scorer.score_many(videos, batch_size=4, progress=False, root=data)
    alone = [scorer.score(v, root=data) for v in videos]
    assert together.paths == videos and not together.errors
    assert np.allclose(together.scores, alone, atol=1e-5)
