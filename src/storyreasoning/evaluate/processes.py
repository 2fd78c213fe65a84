"""Worker processes for a run: forked on Linux (they start at once, with what is imported), else spawned.

A forked process holds a copy of every file descriptor of this one, the pipes to the
Java processes included: while it does, closing CoreNLP's input does not reach the
JVM, which then waits for more text for ever. So the workers close those pipes first
(``close_fds``: the descriptors :meth:`.language.TextScorer.pipes` lists).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor


def executor(workers: int, *, close_fds: Sequence[int] = ()) -> ProcessPoolExecutor:
    """A process pool of ``workers`` processes that do not hold ``close_fds``."""
    fork = sys.platform.startswith("linux")
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
        initializer=_close if fork and close_fds else None,
        initargs=(tuple(close_fds),),
    )


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


__all__ = ["executor"]
