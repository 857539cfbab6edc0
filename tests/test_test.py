"""test.py: prediction CSV for labeled and unlabeled annotation files."""
import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

import test as test_script
from kvq.features.slowfast import video_stamp


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_unlabeled_split_writes_every_video_in_order(trained, tmp_path: Path) -> None:
    cfg, ckpt = trained
    out = tmp_path / "prediction.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--output", str(out), "--no_progress"]) == 0
    rows = read_csv(out)
    assert rows[0] == ["filename", "score"]
    assert [r[0] for r in rows[1:]] == ["w0.mp4", "w2.mp4", "w4.mp4"]
    assert all(float(r[1]) == float(r[1]) for r in rows[1:])


def test_labeled_split_prints_metrics_and_is_deterministic(trained, tmp_path: Path, capsys) -> None:
    cfg, ckpt = trained
    args = ["-o", str(cfg), "--checkpoint", str(ckpt), "--split", "val", "--no_progress"]
    assert test_script.main(args + ["--output", str(tmp_path / "a.csv"), "--plot", str(tmp_path / "s.png")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) == {"SROCC", "PLCC", "KROCC", "RMSE"}
    assert (tmp_path / "s.png").stat().st_size > 0
    assert test_script.main(args + ["--output", str(tmp_path / "b.csv")]) == 0
    assert read_csv(tmp_path / "a.csv") == read_csv(tmp_path / "b.csv")


def test_no_checkpoint_is_a_clear_error(trained, tmp_path: Path) -> None:
    """Neither --checkpoint nor test_load_path: an error, also when load_path is set (it is what
    training starts from, e.g. KSVQE's backbone-only LSVQ file: scoring with it had a random head)."""
    cfg, ckpt = trained
    for extra in ([], ["--set", f"load_path={ckpt}"]):
        with pytest.raises(FileNotFoundError, match="no checkpoint to score with"):
            test_script.main(["-o", str(cfg), "--output", str(tmp_path / "p.csv"), *extra])
    assert not (tmp_path / "p.csv").exists()
    with pytest.raises(SystemExit) as usage:  # neither -o nor --checkpoint
        test_script.main(["--output", str(tmp_path / "p.csv")])
    assert usage.value.code == 2


def test_empty_checkpoint_is_refused_with_exit_2(trained, tmp_path: Path, monkeypatch) -> None:
    """A state dict `{}` used to give random-model scores with exit 0."""
    import sys

    import torch

    from kvq.core.checkpoint import CheckpointMismatchError
    from kvq.cli import run_main

    cfg, _ = trained
    empty, out = tmp_path / "empty.pth", tmp_path / "p.csv"
    torch.save({}, empty)
    with pytest.raises(CheckpointMismatchError,
                       match=r"empty.pth: .* model keys are not in the checkpoint \(simpleVQA"):
        test_script.main(["-o", str(cfg), "--checkpoint", str(empty), "--output", str(out), "--no_progress"])
    monkeypatch.setattr(sys, "argv", ["test.py", "-o", str(cfg), "--checkpoint", str(empty), "--output", str(out)])
    with pytest.raises(SystemExit) as exit_status:
        run_main(test_script.main)
    assert exit_status.value.code == 2 and not out.exists()


def test_checkpoint_alone_scores_videos_without_a_config(trained, tmp_path: Path) -> None:
    """`test.py --checkpoint ckpt.pth --videos x.mp4`: the config stored in the checkpoint."""
    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    common = ["--checkpoint", str(ckpt), "--videos", str(data / "v1.mp4"), "--slowfast_random", "--features",
              str(tmp_path / "features"), "--no_progress"]
    assert test_script.main(common + ["--output", str(tmp_path / "alone.csv")]) == 0
    assert test_script.main(common + ["-o", str(cfg), "--output", str(tmp_path / "with_o.csv")]) == 0
    alone = read_csv(tmp_path / "alone.csv")
    assert alone[0] == ["filename", "score", "calibrated_score"] and alone[1][0] == str(data / "v1.mp4")
    assert alone == read_csv(tmp_path / "with_o.csv")


def test_replaced_video_is_extracted_again(trained, tmp_path: Path) -> None:
    """The --videos SlowFast cache records the file's identity (`video_stamp`): a video replaced at
    the same path gets new features (the stale ones are not reused)."""
    import shutil

    import numpy as np

    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    clip, cache = tmp_path / "clip.mp4", tmp_path / "cache"
    shutil.copy(data / "v1.mp4", clip)
    args = ["--checkpoint", str(ckpt), "--videos", str(clip), "--slowfast_random", "--features", str(cache),
            "--output", str(tmp_path / "s.csv"), "--no_progress"]
    assert test_script.main(args) == 0
    marker = next(cache.rglob(".complete"))
    before = json.loads(marker.read_text()), np.load(marker.parent / "feature_0_slow_feature.npy")
    assert before[0]["video"] == video_stamp(clip)
    shutil.copy(data / "v4.mp4", clip)  # another video, same path
    assert test_script.main(args) == 0
    after = json.loads(marker.read_text()), np.load(marker.parent / "feature_0_slow_feature.npy")
    assert after[0]["video"] == video_stamp(clip) != before[0]["video"]
    assert not np.array_equal(before[1], after[1])


def test_annotation_mode_scores_good_videos_and_lists_bad_ones(trained, tmp_path: Path) -> None:
    """An empty file, a still image named .mp4 and a video without features in the annotation
    file: the others are scored, each bad one is listed with its own reason, exit status 3 (the
    data loader's workers included; the empty file used to be reported as a missing feature)."""
    import shutil

    from tests.media import make_video

    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v0.mp4", "v2.mp4"):
        shutil.copy(data / name, videos / name)
    shutil.copy(data / "v3.mp4", videos / "no_features.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    make_video(tmp_path / "still.png", frames=1).rename(videos / "still.mp4")
    (tmp_path / "list.csv").write_text("filename\nv0.mp4\nempty.mp4\nstill.mp4\nno_features.mp4\nv2.mp4\n")
    out = tmp_path / "p.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--output", str(out), "--no_progress",
                             "--num_workers", "1", "--set", f"data.test.args.anno_file={tmp_path / 'list.csv'}",
                             "--set", f"data.test.args.data_prefix={videos}"]) == 3
    assert [r[0] for r in read_csv(out)[1:]] == ["v0.mp4", "v2.mp4"]
    errors = {r[0]: r[1] for r in read_csv(Path(f"{out}.errors.csv"))[1:]}
    assert set(errors) == {"empty.mp4", "still.mp4", "no_features.mp4"}
    assert "empty (0 bytes)" in errors["empty.mp4"]
    assert "still image" in errors["still.mp4"]
    assert "SlowFast feature file" in errors["no_features.mp4"]


def test_missing_annotation_videos_are_listed_up_front(trained, tmp_path: Path) -> None:
    """Missing files are a setup error found by the preflight, all of them named (exit 2)."""
    from kvq.engine.preflight import PreflightError

    cfg, ckpt = trained
    (tmp_path / "list.csv").write_text("filename\nv0.mp4\ngone1.mp4\ngone2.mp4\n")
    with pytest.raises(PreflightError, match="(?s)2 of 3 video files do not exist.*gone1.mp4.*gone2.mp4"):
        test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--output", str(tmp_path / "p.csv"),
                          "--set", f"data.test.args.anno_file={tmp_path / 'list.csv'}"])


def test_undefined_metrics_are_null_not_nan_or_zero(trained, tmp_path: Path, capsys) -> None:
    """Constant labels (e.g. a placeholder score column): correlations are undefined and RMSE
    after a fit to them is 0 whatever the model: all printed as null in the JSON line."""
    cfg, ckpt = trained
    (tmp_path / "const.csv").write_text("filename,score\n" + "".join(f"v{i}.mp4,3.0\n" for i in range(4)))
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--split", "val", "--no_progress",
                             "--output", str(tmp_path / "p.csv"),
                             "--set", f"data.val.args.anno_file={tmp_path / 'const.csv'}"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "NaN" not in line
    assert json.loads(line) == {"SROCC": None, "PLCC": None, "KROCC": None, "RMSE": None}


def test_score_any_video_lists_undecodable_ones(tmp_path: Path, capsys, caplog) -> None:
    """--videos with a FAST-VQA model: good files scored once (a repeated argument is reported), a
    broken file, a still image named .mp4 and a path that matches nothing listed, exit status 3."""
    import torch

    from models import VQANetwork
    from tests.media import make_video

    clips = tmp_path / "clips"
    make_video(clips / "a.mp4", size="64x96", frames=12)
    make_video(clips / "sub" / "b.mov", size="96x64", frames=12, source="mandelbrot")
    (clips / "broken.mp4").write_bytes(b"not a video")
    make_video(tmp_path / "still.png", frames=1).rename(clips / "still.mp4")
    (clips / "notes.txt").write_text("ignored: not a video extension")
    view = {"fragments_h": 7, "fragments_w": 7, "fsize_h": 32, "fsize_w": 32, "aligned": 8, "clip_len": 8,
            "frame_interval": 1, "num_clips": 1}
    model_args = {"swin_tiny_grpb": {"backbone": {"pretrained": False}, "head": {}}}
    cfg = {"name": "fast", "num_workers": 0, "model": {"type": "swin_tiny_grpb", "args": model_args},
           "data": {"test": {"type": "ViewDecompositionDataset_KVQ",
                             "args": {"anno_file": "unused.csv", "sample_types": {"technical": view}}}}}
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    ckpt = tmp_path / "m.pth"
    torch.save({"state_dict": VQANetwork(model_args).state_dict()}, ckpt)
    out = tmp_path / "scores.csv"
    status = test_script.main(["-o", str(cfg_path), "--checkpoint", str(ckpt), "--videos", str(clips),
                               str(tmp_path / "missing.mp4"), str(clips / "a.mp4"),
                               "--output", str(out), "--gpu_id", "cpu", "--no_progress"])
    assert status == 3
    assert read_csv(out)[0] == ["filename", "score"]  # no calibration in this checkpoint: raw scores only
    assert [r[0] for r in read_csv(out)] == ["filename", str(clips / "a.mp4"), str(clips / "sub" / "b.mov")]
    errors = read_csv(Path(f"{out}.errors.csv"))
    assert errors[0] == ["filename", "error"]
    reasons = dict(errors[1:])
    assert set(reasons) == {str(clips / "broken.mp4"), str(clips / "still.mp4"), str(tmp_path / "missing.mp4")}
    assert "still image" in reasons[str(clips / "still.mp4")]
    assert "no such file" in reasons[str(tmp_path / "missing.mp4")]
    assert "3 of 5 videos could not be scored" in capsys.readouterr().err
    assert f"repeated paths (1): {clips / 'a.mp4'}" in caplog.text


def test_bf16_channels_last_scores_stay_close_to_fp32(trained, tmp_path: Path) -> None:
    cfg, ckpt = trained
    args = ["-o", str(cfg), "--checkpoint", str(ckpt), "--split", "val", "--no_progress"]
    assert test_script.main(args + ["--output", str(tmp_path / "fp32.csv")]) == 0
    assert test_script.main(args + ["--output", str(tmp_path / "bf16.csv"), "--set", "amp=bf16",
                                    "--set", "channels_last=true"]) == 0
    fp32, bf16 = read_csv(tmp_path / "fp32.csv")[1:], read_csv(tmp_path / "bf16.csv")[1:]
    assert [r[0] for r in fp32] == [r[0] for r in bf16]
    ref = [float(r[1]) for r in fp32]
    scale = max(abs(s) for s in ref)
    assert all(abs(float(b[1]) - s) <= 0.05 * scale for b, s in zip(bf16, ref))


def test_videos_write_raw_and_calibrated_scores(trained, tmp_path: Path) -> None:
    """--videos: `score` is the raw output, `calibrated_score` the checkpoint's calibration of it."""
    import torch

    from kvq.eval.calibration import Calibration

    cfg, ckpt = trained
    cal = Calibration.from_dict(torch.load(ckpt, weights_only=False)["calibration"])
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    out = tmp_path / "scores.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--videos", str(data / "v1.mp4"),
                             str(data / "v3.mp4"), "--output", str(out), "--no_progress", "--slowfast_random",
                             "--features", str(tmp_path / "features")]) == 0
    rows = read_csv(out)
    assert rows[0] == ["filename", "score", "calibrated_score"]
    assert [r[0] for r in rows[1:]] == [str(data / "v1.mp4"), str(data / "v3.mp4")]
    for _, raw, calibrated in rows[1:]:
        assert float(calibrated) == pytest.approx(float(cal.apply(float(raw))), abs=2e-6)


def test_simplevqa_videos_make_their_slowfast_features(trained, tmp_path: Path, capsys) -> None:
    """SimpleVQA --videos without cached features: SlowFast features are made on the way (cached,
    reused), scores equal the annotation path over SlowFast_features.py features of the same
    network, and a broken file is listed without losing the others."""
    import SlowFast_features

    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    (tmp_path / "two.csv").write_text("filename,score\nv0.mp4,1\nv2.mp4,2\n")
    assert SlowFast_features.main(["--video_root", str(data), "--video_csv", str(tmp_path / "two.csv"),
                                   "--feature_save_folder", str(tmp_path / "sf"), "--database", "db",
                                   "--no_pretrained", "--num_workers", "0", "--gpu_ids", "cpu", "--no_progress"]) == 0
    common = ["-o", str(cfg), "--checkpoint", str(ckpt), "--no_progress"]
    assert test_script.main(common + ["--split", "val", "--output", str(tmp_path / "anno.csv"),
                                      "--set", f"data.val.args.anno_file={tmp_path / 'two.csv'}",
                                      "--set", f"data.val.args.data_prefix_3D={tmp_path / 'sf' / 'db'}"]) == 0
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    videos = [str(data / "v0.mp4"), str(tmp_path / "broken.mp4"), str(data / "v2.mp4")]
    out, cache = tmp_path / "videos.csv", tmp_path / "cache"
    args = common + ["--videos", *videos, "--output", str(out), "--slowfast_random", "--features", str(cache)]
    assert test_script.main(args) == 3
    assert "broken.mp4" in read_csv(Path(f"{out}.errors.csv"))[1][0]
    by_video = {r[0]: float(r[1]) for r in read_csv(out)[1:]}
    assert list(by_video) == [videos[0], videos[2]]
    anno = {r[0]: float(r[1]) for r in read_csv(tmp_path / "anno.csv")[1:]}
    assert by_video[videos[0]] == pytest.approx(anno["v0.mp4"], abs=1e-5)
    assert by_video[videos[2]] == pytest.approx(anno["v2.mp4"], abs=1e-5)
    marker = next(cache.rglob(".complete"))
    stamp = marker.stat().st_mtime_ns
    assert test_script.main(args) == 3  # second run: cached features reused
    assert marker.stat().st_mtime_ns == stamp
    assert "could not be scored" in capsys.readouterr().err


def test_simplevqa_videos_without_slowfast_weights_name_the_file(trained, tmp_path: Path,
                                                                 isolated_weight_dirs: Path) -> None:
    from kvq.core.weights import MissingWeightsError

    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    with pytest.raises(MissingWeightsError, match="SLOWFAST_8x8_R50.pyth"):
        test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--videos", str(data / "v0.mp4"),
                          "--output", str(tmp_path / "s.csv"), "--features", str(tmp_path / "c"), "--no_progress"])


def test_scoring_warns_about_bf16_where_the_gpu_has_none(trained, monkeypatch) -> None:
    """load_model (test.py, load_scorer) checks the precision as training does (kvq.core.device.check_amp)."""
    import kvq.api.loading
    from kvq.config import load_config

    cfg, ckpt = trained
    calls = []
    monkeypatch.setattr(kvq.api.loading, "check_amp", lambda device, amp: calls.append((device, amp)))
    kvq.api.loading.load_model(load_config(cfg, ["amp=bf16"]), str(ckpt), torch.device("cpu"))
    assert calls == [(torch.device("cpu"), "bf16")]


def test_a_checkpoint_scores_without_the_pretrained_files_training_started_from(trained, tmp_path: Path,
                                                                                  isolated_weight_dirs) -> None:
    """The stored config of a run trained from ImageNet weights says pretrained: true; scoring with
    its checkpoint (which holds every weight) must not need the ImageNet file."""
    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    obj = torch.load(ckpt, weights_only=False)
    obj["config"]["model"]["args"]["simpleVQA"]["backbone"]["pretrained"] = True
    pretrained_run = tmp_path / "pretrained_run.pth"
    torch.save(obj, pretrained_run)
    assert test_script.main(["--checkpoint", str(pretrained_run), "--videos", str(data / "v1.mp4"), "--slowfast_random",
                             "--features", str(tmp_path / "features"), "--no_progress",
                             "--output", str(tmp_path / "p.csv")]) == 0
    assert len(read_csv(tmp_path / "p.csv")) == 2
