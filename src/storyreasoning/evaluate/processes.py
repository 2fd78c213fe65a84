"""Worker processes for a run: forked on Linux (they start at once, with what is imported), else spawned.

A forked process holds a copy of every file descriptor of this one, the pipes to the
Java processes included: while it does, closing CoreNLP's input does not reach the
JVM, which then waits for more text for ever. So the workers close those pipes first
(``close_fds``: the descriptors :meth:`.language.TextScorer.pipes` lists).

While METEOR's JVM loads (seconds of CPU on more than one core) every CPU-second of
other work delays it. Workers made with ``nice`` (:data:`BACKGROUND_NICE` while Java
runs) take the CPU the JVMs leave idle rather than share it with them, so METEOR's
start-up, the longest path of a run, is barely slowed by the parsing and the plots.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

BACKGROUND_NICE = 10
"""How much lower than this process the workers run beside Java (weight 110 against 1024:
a JVM gets about nine tenths of a core the two share)."""


def executor(workers: int, *, close_fds: Sequence[int] = (), nice: int = 0) -> ProcessPoolExecutor:
    """A process pool of ``workers`` processes that do not hold ``close_fds``, ``nice`` lower in
    priority than this one."""
    fork = sys.platform.startswith("linux")
    fds = tuple(close_fds) if fork else ()
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
        initializer=_start if fds or nice else None,
        initargs=(fds, nice),
    )


def _start(fds: tuple[int, ...], nice: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:  # a priority is a hint: without it the worker only runs as fast as before
            pass


__all__ = ["BACKGROUND_NICE", "executor"]
