"""SlowFast_features.py: file layout, clip plan, resume, bad videos (random-weight network), imports."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import SlowFast_features
from kvq.cli import EXIT_PARTIAL
import torch

from datasets.decoding import VideoDecodeError, VideoReader, iter_frames
from kvq.features.slowfast import CHANGED, COMPLETE, MARKER, ClipStream, feature_status, plan_clips, video_stamp
from tests.media import make_video


def test_clip_plan() -> None:
    p = plan_clips(100, 29.97)
    assert (p.fps, p.n_unique, p.n_total) == (30, 3, 8)
    assert p.frames(2).tolist() == [min(60 + j, 99) for j in range(32)]
    short = plan_clips(10, 30)  # fewer frames than fps: the reference crashed here
    assert (short.n_unique, short.n_total) == (1, 8)
    assert plan_clips(50, 0).fps == 30  # unknown frame rate
    long = plan_clips(300, 25)
    assert (long.n_unique, long.n_total) == (12, 12)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sf")
    make_video(root / "a.mp4", size="64x48", frames=40, rate=20)  # 2 clips
    make_video(root / "b.mp4", size="48x64", frames=5, rate=30)  # fewer frames than fps
    (root / "list.csv").write_text("filename,score\na.mp4,1\nb.mp4,2\n")
    return root


def run(root: Path, out: Path, csv: str = "list.csv") -> int:
    return SlowFast_features.main(["--video_root", str(root), "--video_csv", str(root / csv),
                                   "--feature_save_folder", str(out), "--database", "db", "--no_pretrained",
                                   "--num_workers", "0", "--gpu_id", "cpu", "--no_progress"])


def test_layout_shapes_and_resume(videos: Path, tmp_path: Path) -> None:
    assert run(videos, tmp_path) == 0
    for name in ("a.mp4", "b.mp4"):
        folder = tmp_path / "db" / name
        assert (folder / MARKER).is_file()
        for i in range(8):
            assert np.load(folder / f"feature_{i}_slow_feature.npy").shape == (1, 2048, 1, 1, 1)
            assert np.load(folder / f"feature_{i}_fast_feature.npy").shape == (1, 256, 1, 1, 1)
    a = tmp_path / "db" / "a.mp4"
    f0, f1, f7 = (np.load(a / f"feature_{i}_slow_feature.npy") for i in (0, 1, 7))
    assert not np.array_equal(f0, f1) and np.array_equal(f1, f7)  # clips >= 2 repeat the last one
    stamp = (a / "feature_0_slow_feature.npy").stat().st_mtime_ns
    assert run(videos, tmp_path) == 0  # resume: nothing redone
    assert (a / "feature_0_slow_feature.npy").stat().st_mtime_ns == stamp


IMPORTS_RUNNER = """
import os, runpy, sys
def report(status):
    heavy = sorted(m for m in ("torchvision", "torch._dynamo", "pytorchvideo") if m in sys.modules)
    print("STATUS", status, "HEAVY", heavy, flush=True)
end = os._exit  # the script ends with os._exit (run_main fast_exit)
os._exit = lambda status: (report(status), end(status))
sys.argv = ["SlowFast_features.py", *sys.argv[1:]]
try:
    runpy.run_path("SlowFast_features.py", run_name="__main__")
except SystemExit as e:
    report(e.code)
"""


def test_run_imports_neither_torchvision_nor_dynamo_nor_pytorchvideo(videos: Path, tmp_path: Path) -> None:
    """A whole SlowFast_features.py run in a fresh interpreter: torchvision (whose ops import torch._dynamo)
    and pytorchvideo cost 1.6 s of start-up and 170 MiB; the extractor needs neither."""
    (tmp_path / "one.csv").write_text("filename,score\nb.mp4,2\n")
    args = ["--video_root", str(videos), "--video_csv", str(tmp_path / "one.csv"), "--feature_save_folder",
            str(tmp_path), "--database", "db", "--no_pretrained", "--num_workers", "1", "--gpu_id", "cpu",
            "--no_progress"]
    proc = subprocess.run([sys.executable, "-c", IMPORTS_RUNNER, *args], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().endswith("STATUS 0 HEAVY []"), (proc.stdout[-500:], proc.stderr[-2000:])
    assert (tmp_path / "db" / "b.mp4" / MARKER).is_file()


def test_undecodable_video_is_reported_others_done(videos: Path, tmp_path: Path, capsys) -> None:
    (videos / "bad.mp4").write_bytes(b"garbage")
    (videos / "with_bad.csv").write_text("filename,score\nbad.mp4,1\na.mp4,2\n")
    assert run(videos, tmp_path, "with_bad.csv") == EXIT_PARTIAL
    assert "bad.mp4" in capsys.readouterr().err
    assert (tmp_path / "db" / "a.mp4" / MARKER).is_file()
    assert not (tmp_path / "db" / "bad.mp4").exists()


def test_random_network_is_seeded_so_resumed_runs_agree(videos: Path, tmp_path: Path) -> None:
    """--no_pretrained features are the same in two runs (an interrupted, resumed run mixes
    nothing) and change with --seed; the global RNG is not touched."""
    import torch

    from kvq.features.slowfast import build_extractor, feature_name

    assert run(videos, tmp_path / "one") == 0
    assert run(videos, tmp_path / "two") == 0
    one, two = (np.load(tmp_path / d / "db" / "a.mp4" / "feature_0_slow_feature.npy") for d in ("one", "two"))
    assert np.array_equal(one, two)
    state = torch.get_rng_state()
    a, b = build_extractor(False, seed=0), build_extractor(False, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    first = next(iter(a.state_dict()))
    assert not torch.equal(a.state_dict()[first], b.state_dict()[first])
    assert feature_name("/data/clips/a.mp4") == "data/clips/a.mp4"
    assert not Path(feature_name("../x.mp4")).is_absolute() and ".." not in feature_name("../x.mp4")


def test_a_video_interrupted_while_saving_is_not_complete(tmp_path: Path, monkeypatch) -> None:
    from kvq.features import slowfast as sf

    plan = plan_clips(num_frames=300, fps=30)  # 10 clips: more than the 8 the reference rule checks
    slow = {i: np.zeros((1, 2048, 1, 1, 1), np.float32) for i in range(plan.n_unique)}
    fast = {i: np.zeros((1, 256, 1, 1, 1), np.float32) for i in range(plan.n_unique)}
    real_open, opened = sf.atomic_open, []

    def failing_open(path, *args, **kwargs):
        opened.append(path)
        if len(opened) > 2 * plan.n_total - 3:  # killed with a few files still to write
            raise KeyboardInterrupt
        return real_open(path, *args, **kwargs)

    video = tmp_path / "video.mp4"
    video.write_bytes(b"stand-in")
    monkeypatch.setattr(sf, "atomic_open", failing_open)
    with pytest.raises(KeyboardInterrupt):
        sf.save_video_features(tmp_path, "v.mp4", plan, slow, fast, sf.video_stamp(video))
    assert not sf.is_complete(tmp_path, "v.mp4", video, keep_unrecorded=True)
    monkeypatch.setattr(sf, "atomic_open", real_open)
    sf.save_video_features(tmp_path, "v.mp4", plan, slow, fast, sf.video_stamp(video))
    assert sf.is_complete(tmp_path, "v.mp4", video) and (tmp_path / "v.mp4" / MARKER).is_file()


def test_resume_extracts_a_replaced_video_again(videos: Path, tmp_path: Path) -> None:
    """The marker records the video's size and content digest: a file replaced at the same path is
    extracted again (its old clip files removed, none mixed in); unchanged ones are kept."""
    import json
    import shutil

    root = tmp_path / "videos"
    root.mkdir()
    for name in ("a.mp4", "b.mp4", "list.csv"):
        shutil.copy(videos / name, root / name)
    assert run(root, tmp_path / "out") == 0
    a, b = tmp_path / "out" / "db" / "a.mp4", tmp_path / "out" / "db" / "b.mp4"
    marker = json.loads((a / MARKER).read_text())
    assert marker["video"] == video_stamp(root / "a.mp4")
    assert marker["video"]["size"] == (root / "a.mp4").stat().st_size
    old = np.load(a / "feature_0_slow_feature.npy")
    (a / "feature_11_slow_feature.npy").write_bytes(b"stale clip beyond the new plan")
    b_stamp = (b / "feature_0_slow_feature.npy").stat().st_mtime_ns
    make_video(root / "a.mp4", size="64x48", frames=40, rate=20, source="mandelbrot")  # same path, new video
    assert run(root, tmp_path / "out") == 0
    assert json.loads((a / MARKER).read_text())["video"]["size"] == (root / "a.mp4").stat().st_size
    assert not np.array_equal(old, np.load(a / "feature_0_slow_feature.npy"))
    assert not (a / "feature_11_slow_feature.npy").exists()
    assert (b / "feature_0_slow_feature.npy").stat().st_mtime_ns == b_stamp


def test_folders_without_a_record_are_kept_on_resume_and_redone_by_the_cache(videos: Path, tmp_path: Path,
                                                                           caplog) -> None:
    """A marker without the file's identity (or the reference's layout, no marker) says nothing about the file:
    SlowFast_features.py keeps it with a warning; the --videos/API cache extracts it again."""
    from kvq.features import slowfast as sf

    assert run(videos, tmp_path) == 0
    a = tmp_path / "db" / "a.mp4"
    (a / MARKER).write_text(json.dumps({"clips": 2, "fps": 20, "frames": 40, "video": None}) + "\n")
    b = tmp_path / "db" / "b.mp4"
    (b / MARKER).unlink()  # the reference's layout
    stamp = (a / "feature_0_slow_feature.npy").stat().st_mtime_ns
    assert sf.feature_status(tmp_path / "db", "a.mp4", videos / "a.mp4") == sf.UNRECORDED
    assert sf.feature_status(tmp_path / "db", "b.mp4", videos / "b.mp4") == sf.UNRECORDED
    assert not sf.is_complete(tmp_path / "db", "a.mp4", videos / "a.mp4")
    with caplog.at_level("WARNING"):
        assert run(videos, tmp_path) == 0
    assert "2 feature folders do not record which video file" in caplog.text
    assert (a / "feature_0_slow_feature.npy").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("frames,rate", [(75, 20), (40, 30), (5, 30)])
def test_one_decoding_pass_gives_each_clip_read_on_its_own(tmp_path: Path, frames: int, rate: int) -> None:
    """ClipStream's sequential pass (each frame decoded and resized once) yields exactly the
    clips that reading each clip on its own yields (overlapping clips, a clip past the end)."""
    video = make_video(tmp_path / "v.mp4", size="64x48", frames=frames, rate=rate, extra=["-g", "10"])
    stream = ClipStream([("v.mp4", str(video))], size=32)
    reader = VideoReader(str(video))
    plan = plan_clips(reader.num_frames, reader.fps())
    clips = list(stream.sequential_clips(str(video), plan))
    assert len(clips) == plan.n_unique
    for i, clip in enumerate(clips):
        assert torch.equal(clip, stream.seeking_clip(reader, plan, i))
    items = list(stream)
    assert [it["clip"] for it in items] == list(range(plan.n_unique))


def test_clips_past_a_failed_pass_are_read_one_by_one(tmp_path: Path, monkeypatch) -> None:
    video = make_video(tmp_path / "v.mp4", size="64x48", frames=75, rate=20)
    import kvq.features.slowfast as sf

    def broken_after_25_frames(path: str):
        yield from list(iter_frames(path))[:25]
        raise VideoDecodeError(f"{path}: broken")

    monkeypatch.setattr(sf, "iter_frames", broken_after_25_frames)
    items = list(ClipStream([("v.mp4", str(video))], size=32))
    reader = VideoReader(str(video))
    plan = plan_clips(reader.num_frames, reader.fps())
    assert [it["clip"] for it in items] == list(range(plan.n_unique))
    for it in items:
        assert torch.equal(it["x"], ClipStream([], size=32).seeking_clip(reader, plan, it["clip"]))


def test_amp_bf16_features_are_close_to_fp32(videos: Path, tmp_path: Path) -> None:
    """--amp bf16 (off by default) writes the same files, with features near the fp32 ones."""
    assert run(videos, tmp_path / "fp32") == 0
    assert SlowFast_features.main(["--video_root", str(videos), "--video_csv", str(videos / "list.csv"),
                                   "--feature_save_folder", str(tmp_path / "bf16"), "--database", "db",
                                   "--no_pretrained", "--num_workers", "0", "--gpu_id", "cpu", "--no_progress",
                                   "--amp", "bf16"]) == 0
    for f in sorted((tmp_path / "fp32" / "db" / "a.mp4").glob("*.npy")):
        a, b = np.load(f), np.load(tmp_path / "bf16" / "db" / "a.mp4" / f.name)
        assert b.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_allclose(b, a, atol=0.05 * np.abs(a).max())


def test_a_video_replaced_with_same_size_and_mtime_is_extracted_again(videos: Path, tmp_path: Path) -> None:
    """`cp -p` / `rsync -t` keep size and modification time: the marker's content digest still
    tells the replaced file apart, so its features are not reused (they were, with size + mtime)."""
    import os
    import shutil

    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(videos / "a.mp4", root / "a.mp4")
    (root / "list.csv").write_text("filename,score\na.mp4,1\n")
    assert run(root, tmp_path / "out") == 0
    folder = tmp_path / "out" / "db"
    video = root / "a.mp4"
    assert feature_status(folder, "a.mp4", video) == COMPLETE
    st = video.stat()
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF  # another file: same size
    video.write_bytes(bytes(data))
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, as cp -p leaves it
    assert (video.stat().st_size, video.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert feature_status(folder, "a.mp4", video) == CHANGED
