import codecs
import errno
import os
from pathlib import Path

import pytest

from kvq.core import io as kio
from kvq.core.errors import DiskFullError, InputFileError, OutputPathError, TextEncodingError, UserError
from kvq.core.io import atomic_open, atomic_write_text, check_outputs, read_text

TEXT = "filename,score\nvidéo.mp4,3.5\n"


@pytest.mark.parametrize("data", [TEXT.encode("utf-8"), codecs.BOM_UTF8 + TEXT.encode("utf-8"),
                                  codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
                                  codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be")],
                         ids=["utf8", "utf8-bom", "utf16-le-bom", "utf16-be-bom"])
def test_read_text_decodes_utf8_and_utf16_with_bom(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    assert read_text(path) == TEXT


def test_read_text_keeps_crlf(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a\r\nb\r\n")
    assert read_text(path) == "a\r\nb\r\n"


def test_latin1_is_an_error_naming_file_line_and_encodings(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("filename,score\nok.mp4,1\nvidéo.mp4,3.5\n".encode("latin-1"))
    with pytest.raises(TextEncodingError) as e:
        read_text(path, "annotation file")
    msg = str(e.value)
    assert str(path) in msg and "line 3" in msg and "UTF-8" in msg and "UTF-16" in msg
    assert isinstance(e.value, UserError)


def test_utf16_without_bom_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("filename\na.mp4\n".encode("utf-16-le"))
    with pytest.raises(TextEncodingError, match="line 1"):
        read_text(path)


def test_folder_and_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="is a folder, not a file"):
        read_text(tmp_path, "annotation file")
    with pytest.raises(InputFileError, match="does not exist") as e:
        read_text(tmp_path / "nope.csv")
    assert "nope.csv" in str(e.value) and isinstance(e.value, UserError)


# check_outputs

def test_good_outputs_pass(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("x")
    check_outputs({"--output": tmp_path / "new" / "deeper" / "out.csv", "--log": None},
                  {"--features": tmp_path / "feats"}, {"annotation": tmp_path / "in.csv"})


def test_folder_where_a_file_is_expected(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="--output .* is a folder; a file is expected"):
        check_outputs({"--output": tmp_path})


def test_file_where_a_folder_is_expected(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match="--features .* is a file; a folder is expected"):
        check_outputs(folders={"--features": tmp_path / "f"})


def test_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match="its parent .*f' is a file"):
        check_outputs({"--plot": tmp_path / "f" / "sub" / "plot.png"})
    with pytest.raises(OutputPathError, match="its parent"):
        check_outputs(folders={"checkpoint folder": tmp_path / "f" / "ckpt"})


def test_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(kio.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    with pytest.raises(OutputPathError, match="--output .*'.*ro' is not writable"):
        check_outputs({"--output": ro / "a" / "out.csv"})


def test_same_file_as_an_input(tmp_path: Path) -> None:
    anno = tmp_path / "anno.csv"
    anno.write_text("x")
    with pytest.raises(OutputPathError, match="same file as the input annotation"):
        check_outputs({"--output": tmp_path / "sub" / ".." / "anno.csv"}, inputs={"annotation": anno})
    link = tmp_path / "hard.csv"
    os.link(anno, link)  # another name, same inode
    with pytest.raises(OutputPathError, match="same file"):
        check_outputs({"--output": link}, inputs=[anno])
    sym = tmp_path / "sym.csv"
    sym.symlink_to(anno)
    with pytest.raises(OutputPathError, match="same file"):
        check_outputs({"--output": sym}, inputs=[anno])


def test_two_outputs_on_one_path_and_all_problems_listed(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with pytest.raises(OutputPathError) as e:
        check_outputs({"--output": out, "--errors": out, "--plot": tmp_path})
    assert "are the same path" in str(e.value) and "--plot" in str(e.value)


# atomic_open on a full disk

@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_removes_the_temp_file_and_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            where: str) -> None:
    dest = tmp_path / "out.csv"
    if where == "fsync":
        def fsync(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(kio.os, "fsync", fsync)
    with pytest.raises(DiskFullError) as e:
        with atomic_open(dest, "w") as f:
            f.write("x")
            if where == "write":
                raise OSError(errno.ENOSPC, "No space left on device")
    assert "no space left on device" in str(e.value) and str(dest) in str(e.value)
    assert isinstance(e.value, UserError)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out.csv"
    atomic_write_text(dest, "old")
    monkeypatch.setattr(kio.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(DiskFullError):
        atomic_write_text(dest, "new")
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_other_errors_pass_through_and_clean_up(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with atomic_open(tmp_path / "x", "w"):
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []
