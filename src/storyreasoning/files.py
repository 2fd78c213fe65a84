"""Writing a file atomically: a reader sees the old file whole or the new one whole, never half;
a folder likewise (:func:`atomic_folder`: a story folder, a saved model); and appending a JSON line
whole (:func:`append_json_line`, for the ``.jsonl`` files jobs resume from), never glued onto the
unfinished last line a crash left. A job holds its output folder alone while it writes there
(:func:`lock_folder`).

Every writer goes the same way: the data goes into a fresh temporary file beside the
target (same folder, so same file system), is flushed and fsync'd, and ``os.replace``
puts it in the target's place in one step; then the folder is fsync'd so the new name
survives a power cut. If anything fails on the way (an exception, Ctrl-C), the temporary
file is removed and the target is left as it was.

* the temporary file is ``.<name>.<12 hex digits>.tmp`` (a name too long for that, in bytes, is
  cut on a character and ends in ``-`` and 8 hex digits of its hash): hidden, unique to each write
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
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: The bytes a file name holds (Linux, macOS; Windows holds 255 UTF-16 units, which never number more).
_NAME_MAX = 255
#: Random bytes in a temporary file's name (written as twice as many hex digits).
_RANDOM = 6
#: The bytes of a target's name kept in its temporary file's and folder's names: what the rest leaves
_FILE_KEPT = _NAME_MAX - len("..") - 2 * _RANDOM - len(".tmp")  # .NAME.<hex>.tmp
_FOLDER_KEPT = _NAME_MAX - len("..partial")  # .NAME.partial


def _kept(name: str, room: int) -> str:
    """``name`` when it fits in ``room`` bytes as the file system stores it, else its first whole
    characters and ``-`` and 8 hex digits of its hash, ``room`` bytes at most (two long names that
    begin alike keep temporary names of their own)."""
    if len(os.fsencode(name)) <= room:
        return name
    import hashlib

    head, size = [], 9  # "-" and the digest
    for char in name:
        size += len(os.fsencode(char))
        if size > room:
            break
        head.append(char)
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    return f"{''.join(head)}-{digest}"


def _prefix(path: Path) -> str:
    return f".{_kept(path.name, _FILE_KEPT)}."


def _create(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path``, opened for writing: its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f"{_prefix(path)}{os.urandom(_RANDOM).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 2**-48 a try: another name
            continue


def sync_folder(folder: str | os.PathLike[str]) -> None:
    """fsync a folder, so that the renames done in it are on disk (not possible on every system: then
    skipped)."""
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
        sync_folder(path.parent)


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
def atomic_folder(
    path: str | os.PathLike[str], *, replace: bool = False, sync_parent: bool = True
) -> Iterator[Path]:
    """A new, empty folder beside ``path`` to fill (``.<name>.partial``): when the block ends it takes
    ``path``'s place in one rename, so ``path`` appears complete or not at all; if the block raises,
    it is removed.

    The folders above ``path`` are made if missing. ``path`` must be missing or an empty
    folder, unless ``replace``: then the folder there is removed first (until the rename, a
    moment, neither is there). A ``.<name>.partial`` that a process killed outright left is
    removed when the next write of ``path`` begins, so this is for the one writer of ``path``
    (a job that owns it). The files put in the folder are not fsync'd one by one (a model's
    weights would take long); the rename is, by an fsync of the folder above, unless ``sync_parent``
    is False: for a writer of many folders side by side (story folders) that syncs their folder
    once, itself, before it records them written.
    """
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{_kept(path.name, _FOLDER_KEPT)}.partial")
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
    if sync_parent:
        sync_folder(path.parent)


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


def append_json_line(
    path: str | os.PathLike[str],
    record: Any,
    *,
    fsync: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Append ``record`` to ``path`` as one line of JSON (non-ASCII as it is, UTF-8), made whole before
    the file is opened and written in one append, so lines of concurrent appenders never mix and
    a record that cannot be encoded writes nothing; fsync'd (a crash right after loses nothing)
    unless ``fsync`` is False. The file is made if missing (its folder must exist). ``default`` is
    ``json.dumps``'s, for values JSON has no type for.

    When the file does not end in a newline (a crash cut its last line short), the record starts
    on a line of its own: it is never glued onto the fragment, which stays a line by itself
    that readers report as damaged (the run files' rule, :func:`storyreasoning.tell.run.read_lines`;
    a resume cuts an unfinished last line off before it appends anything). Appenders take turns
    (``fcntl.flock`` on the file, where there is one) so that one never takes another's append
    in progress for a fragment.
    """
    import json

    data = (json.dumps(record, ensure_ascii=False, default=default) + "\n").encode("utf-8")
    flags = os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:  # a file that may be written but not read: appended as it is
        fd, readable = os.open(path, os.O_WRONLY | flags, 0o666), False
    else:
        readable = True
    try:
        _take_turn(fd)
        if readable and _unfinished(fd):
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _take_turn(fd: int) -> None:
    """Wait for the other appenders of the file open at ``fd`` (its lock goes with the descriptor)."""
    try:
        import fcntl
    except ImportError:  # Windows: no turns (a blank line at worst, which readers pass over)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks
        pass


def _unfinished(fd: int) -> bool:
    """Whether the file open at ``fd`` holds something after its last newline."""
    size = os.fstat(fd).st_size
    if not size:
        return False
    if hasattr(os, "pread"):
        last = os.pread(fd, 1, size - 1)
    else:  # Windows: no pread; the append still goes to the end (O_APPEND)
        os.lseek(fd, size - 1, os.SEEK_SET)
        last = os.read(fd, 1)
    return last != b"\n"


# -- one writer a folder ------------------------------------------------------------------------------

#: The file a job holds locked in its output folder while it writes there (hidden: no dataset,
#: upload or reader sees it); removed when the job ends.
LOCK_NAME = ".storyreasoning.lock"
_held: dict[str, list] = {}  # folders this process holds: resolved path -> [descriptor, depth]
_held_guard = threading.Lock()


class FolderBusy(Exception):
    """Another process is writing to the output folder a job was given (the message is the one line
    to show)."""

    def __init__(self, message: str, folder: Path, pid: int | None) -> None:
        super().__init__(message)
        self.folder, self.pid = folder, pid


def local_path(source: object) -> Path | None:
    """The resolved path of ``source`` when it names a file or folder on this machine (``~`` expanded),
    else None (a hub id, a path that does not exist, nothing)."""
    if not source:
        return None
    path = Path(str(source)).expanduser()
    return path.resolve() if path.exists() else None


def busy_message(folder: Path, pid: int | None, given_as: str = "--out") -> str:
    """``another storyreasoning process (pid N) is writing to X; wait for it or choose another --out``
    (``given_as``: how the command takes the folder, ``--out`` or an argument such as ``OUT``)."""
    who = f"another storyreasoning process (pid {pid})" if pid else "another storyreasoning process"
    return f"{who} is writing to {folder}; wait for it or choose another {given_as}"


@contextmanager
def lock_folder(
    folder: str | os.PathLike[str],
    *,
    refuse: Callable[[str], BaseException] | None = None,
    given_as: str = "--out",
) -> Iterator[Path]:
    """Hold ``folder`` (made if missing, with the folders above it) as its one writer for the block:
    a second job given the same folder meanwhile, in another process, is refused with
    ``refuse(line)`` (by default :class:`FolderBusy`), the line naming the holder's pid (see
    :func:`busy_message`; a command passes its user-error class, so the line is all it shows, and
    ``given_as``, how it takes the folder, when that is not ``--out``).
    Jobs that write results as they go (tell-dataset, evaluate judge, build) hold their output
    folder so for their whole life, so two of them never append the same stories twice.

    The lock is the operating system's on ``folder/.storyreasoning.lock`` (``fcntl.flock``;
    ``msvcrt.locking`` on Windows): it ends with the process however the process ends, so a
    crash or a kill never leaves a folder locked; the file itself is removed when the block
    ends (one a killed process leaves behind locks nothing). Where neither exists, or the file
    system refuses locks, the block runs unguarded. Nested blocks of one process on one folder
    share the lock (a command holding its folder calls a library function that holds it too).
    Folders made here are removed again when the block leaves them empty (a job refused
    before it wrote anything leaves nothing behind).
    """
    folder = Path(folder)
    made = _make_folders(folder)
    try:
        key = str(folder.resolve())
        with _held_guard:
            held = _held.get(key)
            if held is not None:
                held[1] += 1
        if held is None:
            fd = _acquire(folder, refuse, given_as)
            with _held_guard:
                _held[key] = held = [fd, 1]
        try:
            yield folder
        finally:
            with _held_guard:
                held[1] -= 1
                last = held[1] == 0
                if last:
                    del _held[key]
            if last:
                _release(held[0], folder)
    finally:
        for path in made:  # the deepest first; one that holds something stays, and so do those above it
            try:
                path.rmdir()
            except OSError:
                break


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and the folders above it that are missing; those made, the deepest first."""
    missing = []
    here = folder
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _holder(fd: int) -> int | None:
    """The pid the lock file open at ``fd`` names (None when it names none yet)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None


def _acquire(
    folder: Path, refuse: Callable[[str], BaseException] | None, given_as: str = "--out"
) -> int | None:
    """Lock ``folder``'s lock file; its descriptor (None when this system offers no lock)."""
    path = folder / LOCK_NAME
    # O_NOFOLLOW: a symlink planted at the lock's name is refused, never followed (its target truncated)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as exc:  # a symlink (refused), a folder, no permission
            line = f"cannot use {path} to hold {folder} ({exc.strerror}); remove it, or choose another {given_as}"
            raise (refuse(line) if refuse is not None else FolderBusy(line, folder, None)) from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                import msvcrt  # Windows: a lock on one byte far past the pid, released with the process

                os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except ImportError:  # neither: unguarded
            os.close(fd)
            return None
        except OSError as exc:
            import errno

            busy = isinstance(exc, BlockingIOError) or exc.errno in (
                errno.EACCES,
                errno.EAGAIN,
                errno.EDEADLK,
            )
            if not busy:  # a file system without locks (some network mounts): unguarded
                os.close(fd)
                return None
            pid = _holder(fd)
            os.close(fd)
            line = busy_message(folder, pid, given_as)
            raise (refuse(line) if refuse is not None else FolderBusy(line, folder, pid)) from None
        # the holder before us may have removed the file as it let go: lock the one that is there
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


#: Where the Windows lock sits in the lock file (past the pid, which others read).
_WINDOWS_BYTE = 1 << 20


def _release(fd: int | None, folder: Path) -> None:
    """Remove the lock file, then let go of the lock (in that order: a job that opened the file
    meanwhile finds it gone once it gets the lock, and locks a new one)."""
    if fd is None:
        return
    path = folder / LOCK_NAME
    try:
        path.unlink(missing_ok=True)
        removed = True
    except OSError:  # Windows removes no file that is open: it goes once closed, below
        removed = False
    try:
        import fcntl  # noqa: F401  (POSIX: closing the descriptor lets go of the lock)
    except ImportError:
        try:
            import msvcrt

            os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except (ImportError, OSError):
            pass
    os.close(fd)
    if not removed:  # (never after a removal: the file there now may be the next holder's)
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


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


def read_json_object(path: str | os.PathLike[str], limit: int = 16 << 20) -> dict:
    """The JSON object a small file holds (a model folder's ``storyreasoning.json`` or processor config):
    {} when it is absent, unreadable, not a regular file, over ``limit`` bytes, not JSON or not an object.
    For settings a caller falls back from, never for a record it must be able to trust."""
    import json

    try:
        data = json.loads(read_bounded(path, limit).decode("utf-8"))
    except (OSError, ValueError):  # TooLarge and UnicodeDecodeError are ValueErrors
        return {}
    return data if isinstance(data, dict) else {}


class TooLarge(ValueError):
    """A file over the bound :func:`read_bounded` reads it to."""


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, for a small file a folder from
    elsewhere names (a pointer, a summary): a FIFO or a device is never waited on or read without end
    (``OSError`` EINVAL, "not a regular file"), a larger file raises :class:`TooLarge` having read at
    most ``limit + 1`` bytes."""
    import errno
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(os.fspath(path))
    return data


__all__ = [
    "LOCK_NAME",
    "FolderBusy",
    "TooLarge",
    "append_json_line",
    "atomic_folder",
    "atomic_path",
    "busy_message",
    "local_path",
    "lock_folder",
    "open_atomic",
    "read_bounded",
    "read_json_object",
    "remove_leftovers",
    "sync_folder",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
