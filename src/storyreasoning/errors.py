"""Errors a user can cause and fix.

``str(error)`` is one sentence that names the problem and the fix. The CLI prints it
without a traceback; Python callers can catch :class:`StoryReasoningError`.

The rules every command follows (``cli.main`` enforces the last two for whatever slips
through):

* a user error is raised as :class:`UsageError` (bad input or option: exit 2) or
  :class:`StoryReasoningError` (exit 1) whose message names the thing and the fix;
* a file-system error names the path and what to do (:func:`file_error`), raised where
  the path is known, with what the path was for ("cannot read the story folder …");
* a missing optional package names its extra, ``pip install 'storyreasoning[data]'``
  (:func:`missing_package`); the extra of each package is in :data:`EXTRAS`.
"""

from __future__ import annotations

import errno


class StoryReasoningError(Exception):
    """A problem with the user's input or environment (bad path, unreadable image, server down)."""

    exit_code = 1


class UsageError(StoryReasoningError):
    """A wrong argument or a missing file: the command cannot start."""

    exit_code = 2


class Interrupted(StoryReasoningError):
    """Ctrl-C: the command stopped where the user asked; the line says what was kept and how to go on."""

    exit_code = 130


#: The extra (``pip install 'storyreasoning[EXTRA]'``) that installs each optional package.
EXTRAS: dict[str, str] = {
    "datasets": "data",
    "pyarrow": "data",
    "huggingface_hub": "data",
    "cv2": "vision",
    "numpy": "vision",
    "scenedetect": "build",
    "torch": "train",
    "torchvision": "train",
    "transformers": "train",
    "accelerate": "train",
    "peft": "train",
    "trl": "train",
    "qwen_vl_utils": "train",
    "scipy": "eval",
    "pycocoevalcap": "eval",
    "matplotlib": "eval",
    "fastapi": "studio",
    "uvicorn": "studio",
    "multipart": "studio",
    "python_multipart": "studio",
    "dlib": "faces",
    "face_recognition_models": "faces",
    "ray": "ray",
}


def missing_package(exc: ImportError) -> UsageError | None:
    """The one-line error for an optional package that is not installed, or None when the
    missing module is none of ours to name (a bug, not a missing extra)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    first = "install torch for your machine (https://pytorch.org), then " if extra == "train" else ""
    broken = "" if isinstance(exc, ModuleNotFoundError) else f" (installed but broken: {str(exc)[:200]})"
    return UsageError(f"this needs {name}{broken}: {first}pip install 'storyreasoning[{extra}]'")


def file_error(exc: OSError, doing: str = "use", *, fix: str = "") -> UsageError:
    """One line for a file-system error, naming the path: ``cannot read the dataset folder X
    (permission denied); make it readable for this user …``.

    ``doing`` says what the path was for (``"read the dataset"``, ``"write the output folder"``);
    ``fix`` replaces the usual advice.
    """
    path = exc.filename if exc.filename is not None else ""
    code = exc.errno
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        access = "writable" if "writ" in doing else "readable" if "read" in doing else "accessible"
        reason, advice = (
            "permission denied",
            f"make it {access} for this user (chmod, chown), or use another path",
        )
    elif isinstance(exc, FileExistsError):
        reason, advice = "it already exists", "choose a new path, or move it out of the way"
    elif isinstance(exc, NotADirectoryError):
        reason, advice = "a file is in the way of a folder", "choose another path, or move the file"
    elif isinstance(exc, IsADirectoryError):
        reason, advice = "it is a folder, not a file", "give a file path"
    elif isinstance(exc, FileNotFoundError):
        reason, advice = "it does not exist", "check the path"
    elif code == errno.ENOSPC:
        reason, advice = "no space left on the device", "free some space, or write elsewhere"
    elif code == errno.EROFS:
        reason, advice = "the file system is read-only", "write elsewhere"
    else:
        reason = (exc.strerror or str(exc) or type(exc).__name__).strip().rstrip(".")
        advice = "check the path, its permissions and the disk"
    return UsageError(f"cannot {doing} {path or '(no path given)'} ({reason}); {fix or advice}")


def json_kind(value: object) -> str:
    """What a JSON value is, for a message about a file or an answer of the wrong shape:
    ``a string``, ``a number``, ``a boolean``, ``a list``, ``an object``, ``null``."""
    names: dict[type, str] = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    names.update({list: "a list", dict: "an object", type(None): "null"})
    return names.get(type(value), f"a {type(value).__name__}")


__all__ = [
    "EXTRAS",
    "Interrupted",
    "StoryReasoningError",
    "UsageError",
    "file_error",
    "json_kind",
    "missing_package",
]
