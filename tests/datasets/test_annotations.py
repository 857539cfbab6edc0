import codecs
from pathlib import Path

import pytest

from datasets.annotations import AnnotationError, detect_format, read_annotations
from kvq.core.errors import TextEncodingError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_kvq_csv_with_extra_columns(videos: Path) -> None:
    f = write(videos / "ann.csv", "filename,score,group\na.mp4,3.5,g1\nb.mp4,2,g1\n")
    recs = read_annotations(f, videos)
    assert detect_format(f) == "kvq_csv"
    assert [(r.video_name, r.label, r.group) for r in recs] == [("a.mp4", 3.5, "g1"), ("b.mp4", 2.0, "g1")]
    assert recs[0].path == str(videos / "a.mp4")


def test_empty_group_cell_means_no_group(videos: Path) -> None:
    f = write(videos / "ann.csv", "filename,score,group\na.mp4,3.5,\nb.mp4,2,s7\n")
    assert [r.group for r in read_annotations(f, videos)] == [None, "s7"]


def test_ksvqe_four_columns(videos: Path) -> None:
    f = write(videos / "ann.txt", "a.mp4,3,2.0,4.25\nb.mp4,3,5,1.5\n")
    recs = read_annotations(f, videos)
    assert detect_format(f) == "ksvqe"
    assert (recs[0].cls_label, recs[0].dis_label, recs[0].label) == (3, 2, 4.25)
    assert recs[1].dis_label == 5


def test_dover_format_ignores_middle_columns(videos: Path) -> None:
    f = write(videos / "ann.txt", "a.mp4,x,y,4.0\n")
    recs = read_annotations(f, videos, fmt="dover")
    assert recs[0].label == 4.0 and recs[0].dis_label == -1


def test_unlabeled_csv(videos: Path) -> None:
    f = write(videos / "test.csv", "filename\na.mp4\nc.mp4\n")
    recs = read_annotations(f, videos)
    assert detect_format(f) == "unlabeled"
    assert [r.label for r in recs] == [None, None]


def test_unlabeled_csv_may_carry_groups(videos: Path) -> None:
    f = write(videos / "test.csv", "filename,group\na.mp4,g1\n")
    assert detect_format(f) == "unlabeled"
    assert read_annotations(f, videos)[0].label is None


@pytest.mark.parametrize(
    "text, fmt, message",
    [
        ("filename,score\na.mp4,abc\n", "auto", "ann.csv:2: score 'abc' is not a number"),
        ("filename,score\na.mp4,nan\n", "auto", "ann.csv:2: score 'nan' is not a finite number"),
        ("filename,score\na.mp4,1\nb.mp4,2\na.mp4,3\n", "auto", "'a.mp4' on lines 2 and 4"),
        ("a.mp4,1,2,3\nb.mp4,1,2\n", "ksvqe", "ann.csv:2: expected 4 fields"),
        ("a.mp4,1,x,3\n", "ksvqe", "ann.csv:1: dis_label 'x' is not a number"),
        ("a.mp4,1.7,2,3\n", "ksvqe", "ann.csv:1: cls_label '1.7' is not an integer"),
        ("a.mp4,inf,2,3\n", "ksvqe", "ann.csv:1: cls_label 'inf' is not an integer"),
        ("filename,quality\na.mp4,3\n", "auto", "ann.csv:1: header .*'quality'.* has no 'score'"),
        ("filename,score\na.mp4\n", "kvq_csv", "ann.csv:2: expected at least 2 fields"),
        ("", "auto", "empty"),
    ],
)
def test_bad_lines_name_file_and_line(videos: Path, text: str, fmt: str, message: str) -> None:
    f = write(videos / "ann.csv", text)
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_annotations(f, videos, fmt=fmt)


def test_missing_files_reported_all_at_once(videos: Path) -> None:
    f = write(videos / "ann.csv", "filename,score\na.mp4,1\nx.mp4,2\ny.mp4,3\n")
    with pytest.raises(AnnotationError) as err:
        read_annotations(f, videos)
    text = str(err.value)
    assert "2 of 3 video files do not exist" in text
    assert "line 3:" in text and "x.mp4" in text and "line 4:" in text and "y.mp4" in text


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="does not exist"):
        read_annotations(tmp_path / "nope.csv")


# encodings (kvq.core.io.read_text) and separators

def _write_videos(tmp_path, names=("a.mp4", "b.mp4")):
    for n in names:
        (tmp_path / n).write_bytes(b"x")


def test_utf8_bom_annotation_reads(tmp_path) -> None:
    _write_videos(tmp_path)
    path = tmp_path / "anno.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"filename,score\na.mp4,1.5\nb.mp4,2\n")
    recs = read_annotations(path, tmp_path)
    assert [(r.video_name, r.label) for r in recs] == [("a.mp4", 1.5), ("b.mp4", 2.0)]


@pytest.mark.parametrize("sep", [",", "\t"], ids=["comma", "tab"])
def test_utf16_le_bom_annotation_reads(tmp_path, sep) -> None:
    """Excel's "Unicode text" (UTF-16 LE with BOM, tab-separated, CRLF) and a UTF-16 comma csv."""
    _write_videos(tmp_path)
    path = tmp_path / "anno.txt"
    text = f"filename{sep}score\r\na.mp4{sep}1.5\r\nb.mp4{sep}2\r\n"
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    recs = read_annotations(path, tmp_path)
    assert [(r.video_name, r.label, r.line) for r in recs] == [("a.mp4", 1.5, 2), ("b.mp4", 2.0, 3)]


def test_latin1_annotation_is_an_error_naming_file_and_line(tmp_path) -> None:
    path = tmp_path / "anno.csv"
    path.write_bytes("filename,score\na.mp4,1\nvidéo.mp4,2\n".encode("latin-1"))
    with pytest.raises(TextEncodingError) as e:
        read_annotations(path, tmp_path, check_files=False)
    assert str(path) in str(e.value) and "line 3" in str(e.value) and "UTF-16" in str(e.value)


def test_annotation_folder_is_named_as_such(tmp_path) -> None:
    with pytest.raises(AnnotationError, match="is a folder, not a file"):
        read_annotations(tmp_path)
