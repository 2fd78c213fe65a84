"""What is installed: a distribution's version, read from its metadata file.

``importlib.metadata`` costs 40 to 90 ms to import on a 2-core machine (it brings the
e-mail parser, zipfile and pathlib's globbing), which a result stamped with a scorer's
version would pay in every process that stamps it. :func:`installed_version` finds the
same ``.dist-info`` (or ``.egg-info``) folder ``importlib.metadata.version`` finds, the first
on ``sys.path`` whose project name matches once normalised, and reads its ``Version:``
line; only where it finds none does it ask ``importlib.metadata``.

This module imports nothing of ours, so every layer may use it.
"""

from __future__ import annotations

import os
import re
import sys

_SEPARATORS = re.compile(r"[-_.]+")


def _normal(name: str) -> str:
    return _SEPARATORS.sub("_", name).lower()


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (``"pycocoevalcap"``), or None when it is
    not installed."""
    wanted = _normal(name)
    for entry in sys.path:
        folder = entry or "."
        try:
            items = os.listdir(folder)
        except OSError:  # a zip file, a folder that is gone
            continue
        for item in items:
            if not item.endswith((".dist-info", ".egg-info")):
                continue
            if _normal(item.rsplit(".", 1)[0].split("-", 1)[0]) != wanted:
                continue
            path = os.path.join(folder, item)
            if os.path.isdir(path):
                path = os.path.join(path, "METADATA" if item.endswith(".dist-info") else "PKG-INFO")
            version = _metadata_version(path)
            if version is not None:
                return version
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _metadata_version(path: str) -> str | None:
    """The ``Version:`` header of a metadata file, or None when it has none or cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line[len("Version:") :].strip() or None
                if not line.strip():  # the headers end at the first blank line
                    return None
    except OSError:
        return None
    return None


__all__ = ["installed_version"]
