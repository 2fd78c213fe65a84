"""Writing a file atomically: a reader sees the old file whole or the new one whole, never half;
a folder likewise (:func:`atomic_folder`: a story folder, a saved model); and appending a JSON line
whole (:func:`append_json_line`, for the ``.jsonl`` files jobs resume from).

Every writer goes the same way: the data goes into a fresh temporary file beside the
target (same folder, so same file system), is flushed and fsync'd, and ``os.replace``
puts it in the target's place in one step; then the folder is fsync'd so the new name
survives a power cut. If anything fails on the way (an exception, Ctrl-C), the temporary
file is removed and the target is left as it was.

* the temporary file is ``.<name>.<12 hex digits>.tmp``: hidden, unique to each write
  (two writers of one target never write into the same temporary file; the last to
  finish wins, whole), and skipped by the dataset upload, which leaves out hidden and
  ``.tmp`` files; only a process killed outright leaves one behind, which the one writer
  of a file (a job that owns its folder) removes with :func:`remove_leftovers`;
* it is created as ``open()`` creates a file (mode 0o666 less the umask), so a file
  written atomically has the permissions a plainly written one would have;
* text is UTF-8 unless said otherwise, with ``open()``'s newline handling (``newline``
  as for ``open()``);
* the target's folder must exist (a caller that wants it made makes it).

Errors are the ``OSError`` the file system raised: the caller knows what the file was for
and turns it into a clear message (:func:`storyreasoning.errors.file_error`).

This module imports nothing of ours, so every layer may use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: The longest target name kept whole in a temporary file's name (a file name holds 255 bytes).
_NAME_KEPT = 200
#: Random bytes in a temporary file's name (written as twice as many hex digits).
_RANDOM = 6


def _prefix(path: Path) -> str:
    return f".{path.name[:_NAME_KEPT]}."


def _create(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path``, opened for writing: its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f"{_prefix(path)}{os.urandom(_RANDOM).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 2**-48 a try: another name
            continue


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it is on disk (not possible on every system: then skipped)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(path: Path, fsync: bool) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside ``path`` (its open descriptor, which the block owns, and its
    path) that replaces ``path`` when the block ends, the folder then fsync'd when ``fsync``; if
    the block raises, it is removed and ``path`` keeps what it had."""
    fd, tmp = _create(path)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _sync_folder(path.parent)


@contextmanager
def open_atomic(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: ``mode`` ``"w"`` (text) or ``"wb"`` (bytes).

    What is written replaces ``path`` when the block ends; if the block raises, nothing
    changes (the temporary file is removed, ``path`` keeps what it had). For writers that
    stream (CSV rows, JSON lines); :func:`write_text_atomic` and the others for a whole
    text at once.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic writes a whole file: mode 'w' or 'wb', not {mode!r}")
    with _replacing(Path(path), fsync) as (fd, _):
        try:
            if mode == "wb":
                f = os.fdopen(fd, "wb")
            else:
                f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` (an empty file) for a writer that wants a path, not a file
    object (a Parquet writer): what is there when the block ends replaces ``path``; if the block
    raises, it is removed and ``path`` keeps what it had."""
    with _replacing(Path(path), fsync) as (fd, tmp):
        os.close(fd)
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextmanager
def atomic_folder(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """A new, empty folder beside ``path`` to fill (``.<name>.partial``): when the block ends it takes
    ``path``'s place in one rename, so ``path`` appears complete or not at all; if the block raises,
    it is removed.

    The folders above ``path`` are made if missing. ``path`` must be missing or an empty
    folder, unless ``replace``: then the folder there is removed first (until the rename, a
    moment, neither is there). A ``.<name>.partial`` that a process killed outright left is
    removed when the next write of ``path`` begins, so this is for the one writer of ``path``
    (a job that owns it). The files put in the folder are not fsync'd one by one (a model's
    weights would take long); the rename is.
    """
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{path.name[:_NAME_KEPT]}.partial")
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)
    elif tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            if replace:
                shutil.rmtree(path)
            else:
                path.rmdir()  # refused (OSError) unless empty
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _sync_folder(path.parent)


def remove_leftovers(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files of ``path`` that writes killed outright (SIGKILL, a power cut) left
    behind; how many. Every other failure removes its own, but a killed process cannot.

    Only for a job that is the one writer of ``path`` (the shards of a conversion, a pairs file):
    it would also remove the temporary file of a write in progress elsewhere.
    """
    path = Path(path)
    prefix, digits = _prefix(path), 2 * _RANDOM
    removed = 0
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return 0
    for entry in entries:
        name = entry.name
        middle = name[len(prefix) : -len(".tmp")]
        if (
            name.startswith(prefix)
            and name.endswith(".tmp")
            and len(middle) == digits
            and all(c in "0123456789abcdef" for c in middle)
            and entry.is_file(follow_symlinks=False)
        ):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def append_json_line(path: str | os.PathLike[str], record: Any, *, fsync: bool = True) -> None:
    """Append ``record`` to ``path`` as one line of JSON (non-ASCII as it is, UTF-8), made whole before
    the file is opened and written in one append, so lines of concurrent appenders never mix and
    a record that cannot be encoded writes nothing; fsync'd (a crash right after loses nothing)
    unless ``fsync`` is False. The file is made if missing (its folder must exist)."""
    import json

    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; the path."""
    with open_atomic(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text_atomic(
    path: str | os.PathLike[str],
    text: str,
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    fsync: bool = True,
) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 unless ``encoding`` says otherwise); the path."""
    with open_atomic(path, "w", encoding=encoding, newline=newline, fsync=fsync) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(
    path: str | os.PathLike[str],
    data: Any,
    *,
    indent: int | None = 2,
    ensure_ascii: bool = False,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
    fsync: bool = True,
) -> Path:
    """Write ``data`` to ``path`` as JSON and a final newline, atomically; the path.

    The text is made before any file is touched, so data JSON cannot encode raises
    ``TypeError`` (or ``ValueError``) and leaves no trace. The defaults are the house's:
    indented by 2, non-ASCII characters as they are (UTF-8).
    """
    import json

    text = json.dumps(data, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys, default=default)
    return write_text_atomic(path, text + "\n", fsync=fsync)


__all__ = [
    "append_json_line",
    "atomic_folder",
    "atomic_path",
    "open_atomic",
    "remove_leftovers",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
