"""Each converter on a small file written in its dataset's official format."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from datasets.annotations import read_annotations
from datasets.converters import ConversionError, Options, convert, kvq_group, write_annotation_csv, write_ksvqe_list


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_konvid(tmp_path: Path) -> None:
    src = tmp_path / "KoNViD_1k_mos.csv"
    src.write_text("flickr_id,mos\n3015488371,3.42\n4495254692,2.98\n")
    out = convert("konvid", [src])
    assert [(r.filename, r.score, r.group) for r in out.rows] == [
        ("3015488371.mp4", 3.42, "3015488371"), ("4495254692.mp4", 2.98, "4495254692")]


def test_livevqc_mat(tmp_path: Path) -> None:
    from scipy.io import savemat

    src = tmp_path / "data.mat"
    names = np.empty((3, 1), dtype=object)
    names[:, 0] = ["A001.mp4", "A002.mp4", "B104.mp4"]
    savemat(src, {"video_list": names, "mos": np.array([[80.2], [45.5], [61.0]])})
    out = convert("livevqc", [src])
    assert [(r.filename, r.score, r.group) for r in out.rows] == [
        ("A001.mp4", 80.2, "A001"), ("A002.mp4", 45.5, "A002"), ("B104.mp4", 61.0, "B104")]
    assert convert("livevqc", [src], Options(suffix=".mkv")).rows[0].filename == "A001.mkv"


def test_youtube_ugc_xlsx_skips_rows_without_mos(tmp_path: Path) -> None:
    from openpyxl import Workbook

    src = tmp_path / "original_videos_MOS_for_YouTube_UGC_dataset.xlsx"
    book = Workbook()
    book.active.title = "readme"
    sheet = book.create_sheet("MOS")
    sheet.append(["vid", "category", "resolution", "MOS full", "MOS chunk00", "MOS chunk05", "MOS chunk10"])
    sheet.append(["Animation_1080P-01b3", "Animation", "1080P", 3.981, 3.9, 4.0, 4.1])
    sheet.append(["Gaming_360P-0ef7", "Gaming", "360P", None, 2.1, None, None])
    sheet.append(["Vlog_720P-11c5", "Vlog", "720P", 2.5, 2.4, 2.6, 2.5])
    sheet.append([None] * 7)  # a blank row: nothing to report
    sheet.append([None, "Sports", "480P", 3.2, None, None, None])
    book.save(src)
    out = convert("youtube_ugc", [src])
    assert [(r.filename, r.score, r.group) for r in out.rows] == [
        ("Animation_1080P-01b3.mkv", 3.981, "Animation_1080P-01b3"), ("Vlog_720P-11c5.mkv", 2.5, "Vlog_720P-11c5")]
    assert len(out.skipped) == 2 and "row 3" in out.skipped[0] and "Gaming_360P-0ef7" in out.skipped[0]
    assert "row 6: no 'vid'" in out.skipped[1] and "Sports" in out.skipped[1]
    h264 = convert("youtube_ugc", [src], Options(suffix="_crf_10_ss_00_t_20.0.mp4"))
    assert h264.rows[0].filename == "Animation_1080P-01b3_crf_10_ss_00_t_20.0.mp4"


def test_lsvq_subsets(tmp_path: Path) -> None:
    src = tmp_path / "labels_train_test.csv"
    src.write_text("name,p1,p2,p3,height,width,mos_p1,mos_p2,mos_p3,mos,frame_number,is_test\n"
                   "yfcc-batch1/10011,,,,540,960,70,71,72,73.5,240,False\n"
                   "ia-batch1/abc,,,,720,1280,50,51,52,55.25,300,True\n")
    assert [r.filename for r in convert("lsvq", [src]).rows] == ["yfcc-batch1/10011.mp4", "ia-batch1/abc.mp4"]
    train = convert("lsvq", [src], Options(subset="train")).rows
    assert [(r.filename, r.score, r.group) for r in train] == [("yfcc-batch1/10011.mp4", 73.5, "yfcc-batch1/10011")]
    assert [r.filename for r in convert("lsvq", [src], Options(subset="test")).rows] == ["ia-batch1/abc.mp4"]
    no_split = tmp_path / "labels_test_1080p.csv"
    no_split.write_text("name,height,width,mos,frame_number\nyfcc-batch9/1,1080,1920,60.1,200\n")
    assert convert("lsvq", [no_split]).rows[0].score == 60.1
    with pytest.raises(ConversionError, match="needs an is_test column"):
        convert("lsvq", [no_split], Options(subset="train"))


def test_kvq_groups_of_seven_consecutive_ids(tmp_path: Path) -> None:
    train = tmp_path / "train_data.csv"
    train.write_text("filename,score\n" + "".join(f"train/{i:04d}.mp4,{1 + i / 10:.3f}\n" for i in range(1, 16)))
    val = tmp_path / "val_data.csv"
    val.write_text("filename,score\nval/0001.mp4,2.5\nval/0007.mp4,3\nval/0008.mp4,4\n")
    out = convert("kvq", [train, val])
    groups = {r.filename: r.group for r in out.rows}
    assert groups["train/0001.mp4"] == groups["train/0007.mp4"] == "train/0001-0007"
    assert groups["train/0008.mp4"] == groups["train/0014.mp4"] == "train/0008-0014"
    assert groups["train/0015.mp4"] == "train/0015-0021"
    assert groups["val/0007.mp4"] == "val/0001-0007" != groups["val/0008.mp4"]
    assert kvq_group("0003.mp4", 3) == "0001-0003" and kvq_group("x/0000.mp4") is None


def test_kvq_keeps_a_group_column_and_refuses_other_naming(tmp_path: Path) -> None:
    grouped = tmp_path / "g.csv"
    grouped.write_text("filename,score,group\nclip_a.mp4,3,s1\nclip_b.mp4,2,s1\n")
    assert [r.group for r in convert("kvq", [grouped]).rows] == ["s1", "s1"]
    named = tmp_path / "n.csv"
    named.write_text("filename,score\nclip_a.mp4,3\ntrain/0001.mp4,2\n")
    with pytest.raises(ConversionError, match=r"n.csv: cannot infer source groups .*line 2: 'clip_a.mp4'"):
        convert("kvq", [named])


@pytest.mark.parametrize("text, message", [
    ("flickr_id,score\n1,3\n", "no MOS column"),
    ("flickr_id,mos\n1,abc\n", r"KoNViD_1k_mos.csv:2: score 'abc' is not a number"),
    ("flickr_id,mos\n1,3\n1,4\n", "listed more than once: 1.mp4"),
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    src = tmp_path / "KoNViD_1k_mos.csv"
    src.write_text(text)
    with pytest.raises(ConversionError, match=message):
        convert("konvid", [src])


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="did you mean 'konvid'"):
        convert("konvd", [tmp_path / "x.csv"])
    with pytest.raises(ConversionError, match="does not exist"):
        convert("kvq", [tmp_path / "x.csv"])


def test_output_reads_back_with_groups(tmp_path: Path) -> None:
    src = tmp_path / "KoNViD_1k_mos.csv"
    src.write_text("flickr_id,mos\n11,3.25\n12,1.5\n")
    out = write_annotation_csv(tmp_path / "all.csv", convert("konvid", [src]).rows)
    assert rows_of(out)[0] == ["filename", "score", "group"]
    recs = read_annotations(out, check_files=False)
    assert [(r.video_name, r.label, r.group) for r in recs] == [("11.mp4", 3.25, "11"), ("12.mp4", 1.5, "12")]


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_annotations", Path(__file__).resolve().parents[2] / "scripts" / "convert_annotations.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script(tmp_path: Path) -> None:
    mod = _script()
    src = tmp_path / "train_data.csv"
    src.write_text("filename,score\ntrain/0001.mp4,3.36\ntrain/0002.mp4,2.5\n")
    assert mod.main(["--format", "kvq", str(src), str(tmp_path / "out.csv")]) == 0
    assert rows_of(tmp_path / "out.csv")[1:] == [["train/0001.mp4", "3.36", "train/0001-0007"],
                                                  ["train/0002.mp4", "2.5", "train/0001-0007"]]


def test_ksvqe_list_from_kvq_csvs(tmp_path: Path) -> None:
    """cls_label = source group index, dis_label = position in the group (0 = the source), as the
    demo dataset's lists; read back by the ksvqe annotation reader."""
    train = tmp_path / "train_data.csv"  # ids 1..9: group 1-7 (0003 missing), then 8-14 (8, 9)
    train.write_text("filename,score\n" + "".join(f"train/{i:04d}.mp4,{i / 2}\n" for i in (1, 2, 4, 5, 6, 7, 8, 9)))
    out = write_ksvqe_list(tmp_path / "train_ksvqe.txt", convert("kvq", [train]).rows, first_cls=10)
    assert not out.read_text().startswith("filename")
    recs = read_annotations(out, fmt="auto", check_files=False)
    got = [(r.video_name, r.cls_label, r.dis_label, r.label) for r in recs]
    assert got == [("train/0001.mp4", 10, 0, 0.5), ("train/0002.mp4", 10, 1, 1.0), ("train/0004.mp4", 10, 3, 2.0),
                   ("train/0005.mp4", 10, 4, 2.5), ("train/0006.mp4", 10, 5, 3.0), ("train/0007.mp4", 10, 6, 3.5),
                   ("train/0008.mp4", 11, 0, 4.0), ("train/0009.mp4", 11, 1, 4.5)]
    grouped = tmp_path / "g.csv"  # a group column: position = order of appearance in the group
    grouped.write_text("filename,score,group\na.mp4,3,s1\nb.mp4,2,s2\nc.mp4,1,s1\n")
    rows = list(csv.reader(open(write_ksvqe_list(tmp_path / "g.txt", convert("kvq", [grouped]).rows))))
    assert rows == [["a.mp4", "0", "0", "3"], ["b.mp4", "1", "0", "2"], ["c.mp4", "0", "1", "1"]]


def test_script_writes_ksvqe_lists(tmp_path: Path, capsys) -> None:
    mod = _script()
    src = tmp_path / "val_data.csv"
    src.write_text("filename,score\nval/0001.mp4,3.36\nval/0002.mp4,2.5\nval/0008.mp4,4\n")
    out = tmp_path / "val_ksvqe.txt"
    assert mod.main(["--format", "kvq", "--output-format", "ksvqe", "--first-cls", "418", str(src), str(out)]) == 0
    assert rows_of(out) == [["val/0001.mp4", "418", "0", "3.36"], ["val/0002.mp4", "418", "1", "2.5"],
                            ["val/0008.mp4", "419", "0", "4"]]
    assert "3 videos in 2 groups (cls_label 418..419)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mod.parse_args(["--format", "kvq", "--first-cls", "3", str(src), str(out)])
