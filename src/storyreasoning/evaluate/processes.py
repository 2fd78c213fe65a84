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

import gc
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

BACKGROUND_NICE = 10
"""How much lower than this process the workers run beside Java (weight 110 against 1024:
a JVM gets about nine tenths of a core the two share)."""

GC_YOUNG = 50_000
"""Allocations between two collections of the youngest generation during :func:`batch_gc`
(Python's default: 700)."""


@contextmanager
def batch_gc() -> Iterator[None]:
    """Collect cyclic garbage rarely while a run builds objects that live to its end.

    A run's parsed stories, per-story parts and scores are nearly all alive until the
    report is written, and most of what dies has no cycle (reference counting frees it),
    so the cycle collector's frequent passes over a growing heap find little. Inside, what
    exists already (the imported modules) is frozen out of every pass, and the youngest
    generation is collected every :data:`GC_YOUNG` allocations; workers forked inside
    inherit both (spawned ones apply them: :func:`executor`). Everything is as before on
    leaving. On the 626-story run, about 3 % fewer instructions in the main process.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def executor(workers: int, *, close_fds: Sequence[int] = (), nice: int = 0) -> ProcessPoolExecutor:
    """A process pool of ``workers`` processes that do not hold ``close_fds``, ``nice`` lower in
    priority than this one."""
    fork = sys.platform.startswith("linux")
    fds = tuple(close_fds) if fork else ()
    young = gc.get_threshold()[0]  # batch_gc's, when the pool is made inside it
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
        initializer=_start if fds or nice or not fork else None,
        initargs=(fds, nice, young),
    )


def _start(fds: tuple[int, ...], nice: int, young: int = 700) -> None:
    if young != gc.get_threshold()[0]:  # a spawned worker: the parent's collection rhythm
        gc.set_threshold(young, *gc.get_threshold()[1:])
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


__all__ = ["BACKGROUND_NICE", "GC_YOUNG", "batch_gc", "executor"]
