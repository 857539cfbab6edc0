"""Files in and out: atomic writes (a file is either the old one or the complete new one, never
half), the one text reader of every input text file (`read_text`), and the start-up check of
output paths (`check_outputs`)."""
from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Optional, Union

from kvq.core.errors import DiskFullError, InputFileError, OutputPathError, TextEncodingError

__all__ = ["atomic_open", "atomic_torch_save", "atomic_write_text", "read_text", "check_outputs", "ENCODINGS"]

PathLike = Union[str, os.PathLike]
ENCODINGS = "UTF-8, UTF-8 with BOM, UTF-16 with BOM (LE or BE)"  # what read_text accepts, for messages
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _disk_full(exc: BaseException) -> bool:
    """True if `exc`, or an exception it was raised from (torch.save wraps write errors), is ENOSPC/EDQUOT."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`. On any
    error the temporary file is removed; a full disk (ENOSPC, EDQUOT) is a `DiskFullError` saying
    "no space left on device" and naming `path`."""
    path = Path(path)
    tmp: Optional[str] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, Exception) and not isinstance(e, DiskFullError) and _disk_full(e):
            raise DiskFullError(f"cannot write '{path}': no space left on device "
                                "(nothing was written; free some space and run again)") from e
        raise


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """torch.save through `atomic_open` (torch imported here so the scorer does not need it)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def _input_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise InputFileError(f"{what} '{path}' is a folder, not a file")
    if not path.exists():
        raise InputFileError(f"{what} '{path}' does not exist")


def read_text(path: PathLike, what: str = "file") -> str:
    """The text of `path`, decoded as UTF-8 (a BOM is dropped) or, with a BOM, UTF-16 LE/BE;
    newlines are left as they are (parse with `io.StringIO(text, newline="")`). Any other bytes
    (Latin-1, Windows-1252, UTF-16 without BOM) are a `TextEncodingError` naming the file, the line
    of the first byte that does not decode and the encodings tried; a missing path or a folder is
    an `InputFileError` (`what` names the file's role in messages, e.g. "annotation file")."""
    path = Path(path)
    _input_file(path, what)
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        codec, body, name = "utf-8", data[len(codecs.BOM_UTF8):], "UTF-8 (with BOM)"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16-le" if data.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
        body, name = data[2:], f"UTF-16 {codec[-2:].upper()} (with BOM)"
    else:
        codec, body, name = "utf-8", data, "UTF-8"
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as e:
        line = body[:e.start].decode(codec, errors="replace").count("\n") + 1
        bad = body[e.start:e.end][:4].hex(" ")
        raise TextEncodingError(
            f"{what} '{path}', line {line}: byte(s) {bad} at offset {e.start + len(data) - len(body)} are not "
            f"{name}; tried {ENCODINGS}. Save the file as UTF-8 (a Latin-1 or Windows-1252 file, e.g. "
            "from older Excel, must be converted)") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise TextEncodingError(
            f"{what} '{path}', line {line}: NUL character in {name} text (UTF-16 without a BOM?); "
            f"tried {ENCODINGS}. Save the file as UTF-8")
    return text


def _labelled(paths: Union[Mapping[str, Optional[PathLike]], Iterable[Optional[PathLike]]]) -> list[tuple[str, Path]]:
    items = paths.items() if isinstance(paths, Mapping) else ((str(p), p) for p in paths)
    return [(label, Path(p)) for label, p in items if p is not None and str(p) != ""]


def _same(a: Path, b: Path) -> bool:
    """Same file: by device and inode when both exist (hard links, symlinks), else by resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(files: Mapping[str, Optional[PathLike]] = {}, folders: Mapping[str, Optional[PathLike]] = {},
                  inputs: Union[Mapping[str, Optional[PathLike]], Iterable[Optional[PathLike]]] = ()) -> None:
    """Check every output path before any work; None entries are skipped. `files` and `folders`:
    label (the flag or config key, e.g. "--output") -> path of an output file / folder; `inputs`:
    label -> path (or bare paths) of every input (annotation, video, config, checkpoint, label
    file). Refused, all problems in one `OutputPathError` naming label and path: a folder where a
    file is expected, a file where a folder is expected, a parent path component that is a file,
    a nearest existing folder that is not writable, an output that is the same file as an input
    (device and inode, or resolved path when one does not exist yet), two outputs on one path."""
    problems: list[str] = []
    outputs = [(label, p, "file") for label, p in _labelled(files)]
    outputs += [(label, p, "folder") for label, p in _labelled(folders)]
    sources = _labelled(inputs)
    for label, path, kind in outputs:
        where = f"{label} '{path}'"
        if kind == "file" and path.is_dir():
            problems.append(f"{where} is a folder; a file is expected")
            continue
        if kind == "folder" and path.exists() and not path.is_dir():
            problems.append(f"{where} is a file; a folder is expected")
            continue
        start = path.absolute() if kind == "folder" else path.absolute().parent
        existing = next((p for p in (start, *start.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            problems.append(f"{where}: its parent '{existing}' is a file, not a folder")
            continue
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"{where}: the folder '{existing}' is not writable")
            continue
        for in_label, source in sources:
            if _same(path, source):
                problems.append(f"{where} is the same file as the input {in_label} '{source}': "
                                "writing it would destroy the input")
    for i, (label, path, _) in enumerate(outputs):
        for other, other_path, _ in outputs[i + 1:]:
            if _same(path, other_path):
                problems.append(f"{label} '{path}' and {other} '{other_path}' are the same path")
    if problems:
        raise OutputPathError("output path problem" + ("s" if len(problems) > 1 else "") + ":\n  "
                              + "\n  ".join(problems))


DIGEST_BYTES = 1 << 20  # bytes read from each end of a file for its content digest


def content_digest(path: PathLike, chunk: int = DIGEST_BYTES) -> tuple[int, str]:
    """(size, SHA-256 of the size and the first and last `chunk` bytes): a cheap identity of a
    large file's content (two files with equal digests are the same video in practice; a file
    rewritten with the same size and modification time, as `cp -p` leaves it, gets another one).
    OSError when the file cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(str(size).encode())
        digest.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            digest.update(f.read(chunk))
    return size, digest.hexdigest()
