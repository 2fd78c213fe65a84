"""What built a story: the revision of each model, and the differences between two builds' records.

Perceivers and writers say what they are with ``describe()``, a JSON-able dict; the
models in it are listed under a ``models`` key, each as ``{"id": …, "revision": …}``
(:func:`model_record`), or as ``{file name: SHA-256}`` for weight files (the dlib face
models). :func:`models_in` collects them from a whole description, so a story's
``meta.json`` can name every model that built it and a resumed build can tell when one
changed.

A model's revision is what pins its weights:

* loaded from the hub cache: the commit transformers read it from
  (``model.config._commit_hash``), else the commit the cache holds for its id;
* a local folder: a short SHA-256 of its ``config.json`` and the names and sizes of its
  weight files (hashing gigabytes of weights at every build would take minutes; a
  fine-tuned folder rewritten in place changes its sizes or its config);
* a single file: its SHA-256;
* an endpoint's model: unknown (OpenAI-compatible servers do not say), so ``None``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..data.card import models_in  # defined where the dataset card reads build records; used here too
from ..models import hub_commit

WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".gguf",
    ".dat",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_revision(folder: Path) -> str:
    """``config.json sha256 1a2b3c4d5e6f; model.safetensors 1234 bytes, …`` for a local model folder."""
    folder = Path(folder)
    config = folder / "config.json"
    parts = [f"config.json sha256 {sha256_file(config)[:12]}" if config.is_file() else "no config.json"]
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(WEIGHT_SUFFIXES))
    parts.append(
        ", ".join(f"{p.name} {p.stat().st_size} bytes" for p in weights) if weights else "no weight files"
    )
    return "; ".join(parts)


def model_revision(source: str | Path, model: Any = None) -> str | None:
    """The revision of a model loaded from ``source`` (a hub id, a folder or a file); ``model`` is the
    loaded transformers model when there is one (its config knows the commit it was read from)."""
    path = Path(str(source))
    if path.is_dir():
        return folder_revision(path)
    if path.is_file():
        return f"sha256 {sha256_file(path)}"
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)  # transformers before 5
    if isinstance(commit, str) and commit:
        return commit
    return hub_commit(str(source))


def model_record(source: str | Path, model: Any = None) -> dict:
    """``{"id": source, "revision": …}``: how a description names a model (see the module docstring)."""
    return {"id": str(source), "revision": model_revision(source, model)}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": leaf}`` (lists are leaves)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differences(old: Any, new: Any, *, ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every leaf that differs, sorted; a leaf whose last key is in
    ``ignore`` never counts (``device``: where a model ran, not what it is), and an absent leaf is None
    (a setting added since, whose default is None, changes nothing)."""
    skip = set(ignore)
    before, after = flatten(old), flatten(new)
    out = []
    for key in sorted(set(before) | set(after)):
        if key.rsplit(".", 1)[-1] in skip:
            continue
        a, b = before.get(key), after.get(key)
        if a != b:
            out.append((key, a, b))
    return out


__all__ = [
    "differences",
    "flatten",
    "folder_revision",
    "model_record",
    "model_revision",
    "models_in",
    "sha256_file",
]
