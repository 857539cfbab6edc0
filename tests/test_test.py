"""test.py: prediction CSV for labeled and unlabeled annotation files."""
import csv
import json
from pathlib import Path

import pytest
import yaml

import test as test_script


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_unlabeled_split_writes_every_video_in_order(trained, tmp_path: Path) -> None:
    cfg, ckpt = trained
    out = tmp_path / "prediction.csv"
    assert test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--output", str(out), "--no_progress"]) == 0
    rows = read_csv(out)
    assert rows[0] == ["filename", "score"]
    assert [r[0] for r in rows[1:]] == ["v0.mp4", "v2.mp4", "v4.mp4"]
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
    cfg, _ = trained
    with pytest.raises(FileNotFoundError, match="no checkpoint to score with"):
        test_script.main(["-o", str(cfg), "--output", str(tmp_path / "p.csv")])


def test_score_any_video_lists_undecodable_ones(tmp_path: Path, capsys) -> None:
    """--videos with a FAST-VQA model: good files scored, a broken one listed, exit status 3."""
    import torch

    from models import VQANetwork
    from tests.media import make_video

    clips = tmp_path / "clips"
    make_video(clips / "a.mp4", size="64x96", frames=12)
    make_video(clips / "sub" / "b.mov", size="96x64", frames=12, source="mandelbrot")
    (clips / "broken.mp4").write_bytes(b"not a video")
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
                               "--output", str(out), "--gpu_id", "cpu", "--no_progress"])
    assert status == 3
    assert read_csv(out)[0] == ["filename", "score"]  # no calibration in this checkpoint: raw scores only
    assert [r[0] for r in read_csv(out)] == ["filename", str(clips / "a.mp4"), str(clips / "sub" / "b.mov")]
    errors = read_csv(Path(f"{out}.errors.csv"))
    assert errors[0] == ["filename", "error"] and errors[1][0] == str(clips / "broken.mp4")
    assert "could not be scored" in capsys.readouterr().err


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

    from kvq.calibration import Calibration

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
    from kvq.weights import MissingWeightsError

    cfg, ckpt = trained
    data = Path(yaml.safe_load(cfg.read_text())["data"]["train"]["args"]["data_prefix"])
    with pytest.raises(MissingWeightsError, match="SLOWFAST_8x8_R50.pyth"):
        test_script.main(["-o", str(cfg), "--checkpoint", str(ckpt), "--videos", str(data / "v0.mp4"),
                          "--output", str(tmp_path / "s.csv"), "--features", str(tmp_path / "c"), "--no_progress"])
