"""Tell jobs: a storyteller's stream in a worker thread, its events in a list the page reads.

A :class:`Job` runs :meth:`~storyreasoning.tell.Teller.stream` in its own thread and
feeds each chunk to a :class:`~storyreasoning.format.StreamParser` (constant work per
chunk). It appends ``{"event": "chunk", "text", "tokens"}``, then the parser's events,
and ends with exactly one final event: ``done`` (the telling, its meta and the raw
text), ``error`` (the one-line message and the partial text) or ``cancelled`` (the
partial text). Events are kept in order in the job, so the page may connect after the
job started, or reconnect, and still read every event from any index.

Cancelling appends ``cancelled`` at once; the worker sees the flag at its next chunk,
stops reading and closes the teller's stream (a generator: closing it ends the request
to a server). Finished jobs are forgotten ``ttl`` seconds later (the oldest sooner when
more than ``MAX_KEPT`` are kept). At most ``max_jobs``
workers run at once; a local-weights teller runs one job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import StoryReasoningError
from ..format.stream import StreamParser
from ..tell.base import Prompt, Sampling, Teller, TellError
from .errors import ApiError

log = logging.getLogger("storyreasoning.studio")

FINAL = frozenset({"done", "error", "cancelled"})
MAX_KEPT = 200  # finished jobs remembered at most (their events are in memory)


class Job:
    """One story being told: its events so far, whether it is finished, and its cancel flag."""

    def __init__(self, job_id: str) -> None:
        self.id = job_id
        self.created = time.monotonic()
        self.finished_at: float | None = None
        self.events: list[dict] = []
        self.chunks: list[str] = []
        self.cancel_requested = threading.Event()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    # -- writing (the worker, the cancel request) -------------------------------------------------
    def push(self, events: list[dict], chunk: str | None = None) -> bool:
        """Append events (and the chunk they came from); False when the job already finished."""
        with self._lock:
            if self.finished_at is not None:
                return False
            if chunk is not None:
                self.chunks.append(chunk)
            self.events.extend(events)
            if events and events[-1]["event"] in FINAL:
                self.finished_at = time.monotonic()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()
        return True

    def finish(self, event: dict) -> bool:
        """Append the final event unless another one came first."""
        return self.push([event])

    @property
    def partial(self) -> str:
        with self._lock:
            return "".join(self.chunks)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # -- reading (the event stream) ----------------------------------------------------------------
    def since(self, index: int) -> tuple[list[dict], bool]:
        """The events from ``index`` on, and whether the last of all events is the final one."""
        with self._lock:
            return self.events[index:], self.finished_at is not None

    async def wait(self, index: int, timeout: float) -> None:
        """Return when there is an event at ``index`` or later, the job finished, or ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(flag.set)

        with self._lock:
            if len(self.events) > index or self.finished_at is not None:
                return
            self._wakers.append(wake)
        try:
            await asyncio.wait_for(flag.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._wakers.remove(wake)


class JobManager:
    """Starts, finds, cancels and forgets tell jobs for one teller."""

    def __init__(self, teller: Teller, *, max_jobs: int, ttl: float, serial: bool = False) -> None:
        self.teller = teller
        self.max_jobs = max_jobs
        self.ttl = ttl
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._serial = threading.Lock() if serial else None  # local weights: one generate at a time
        self._closing = False

    def _purge(self) -> None:
        """Forget jobs finished more than ``ttl`` seconds ago, and the oldest beyond ``MAX_KEPT``."""
        now = time.monotonic()
        with self._lock:
            ended = [(job_id, job) for job_id, job in self._jobs.items() if job.finished_at is not None]
            for job_id, job in ended:
                if not job.running and now - job.finished_at > self.ttl:
                    del self._jobs[job_id]
            ended = [(job.finished_at, job_id) for job_id, job in self._jobs.items() if job.finished_at]
            for _, job_id in sorted(ended)[: max(0, len(self._jobs) - MAX_KEPT)]:
                if not self._jobs[job_id].running:
                    del self._jobs[job_id]

    def start(
        self, images: list[Any], sizes: list[tuple[int, int]], *, prompt: Prompt, sampling: Sampling
    ) -> Job:
        self._purge()
        with self._lock:
            if self._closing:
                raise ApiError(503, "the studio is shutting down; start it again")
            running = sum(job.running for job in self._jobs.values())
            if running >= self.max_jobs:
                raise ApiError(
                    429,
                    f"{running} stories are being told already (the most at once); "
                    "wait for one to finish or cancel it",
                )
            job = Job("j" + secrets.token_hex(12))
            job.thread = threading.Thread(
                target=self._run,
                args=(job, images, sizes, prompt, sampling),
                name=f"studio-tell-{job.id}",
                daemon=True,
            )
            self._jobs[job.id] = job
        job.thread.start()
        return job

    def get(self, job_id: str) -> Job:
        self._purge()
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(
                404,
                f"no tell job {job_id[:40]!r}: it never existed or finished more than "
                f"{self.ttl / 60:g} minutes ago; generate again",
            )
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel_requested.set()
        job.finish({"event": "cancelled", "partial": job.partial})
        return job

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every job and wait a little for the workers to stop."""
        with self._lock:
            self._closing = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_requested.set()
            job.finish({"event": "cancelled", "partial": job.partial})
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    # -- the worker ---------------------------------------------------------------------------------
    def _run(self, job: Job, images: list[Any], sizes: list[tuple[int, int]], prompt, sampling) -> None:
        with self._serial or contextlib.nullcontext():
            if job.cancel_requested.is_set():
                return
            try:
                self._tell(job, images, sizes, prompt, sampling)
            except Exception as exc:  # the page must hear of every failure
                log.exception("tell job %s failed", job.id)
                job.finish(
                    {
                        "event": "error",
                        "message": f"the studio failed while telling the story ({type(exc).__name__}: {exc}); "
                        "see the studio's log",
                        "partial": job.partial,
                    }
                )

    def _tell(self, job: Job, images, sizes, prompt: Prompt, sampling: Sampling) -> None:
        parser = StreamParser()
        start = time.perf_counter()
        first: float | None = None
        tokens = 0
        stream = None
        try:
            stream = self.teller.stream(images, prompt=prompt, sampling=sampling)
            for chunk in stream:
                if job.cancel_requested.is_set():
                    break
                if not chunk:
                    continue
                if first is None:
                    first = time.perf_counter() - start
                tokens += 1
                events = [{"event": "chunk", "text": chunk, "tokens": tokens}]
                events += [event.to_dict() for event in parser.feed(chunk)]
                if not job.push(events, chunk):
                    break  # cancelled meanwhile
        except StoryReasoningError as exc:  # TellError (server down, stream broken), unreadable image
            partial = parser.text or (exc.partial if isinstance(exc, TellError) else "")
            job.finish({"event": "error", "message": str(exc), "partial": partial})
            return
        finally:
            if stream is not None and hasattr(stream, "close"):
                with contextlib.suppress(Exception):
                    stream.close()  # a generator: ends the request to a server
        if job.cancel_requested.is_set():
            job.finish({"event": "cancelled", "partial": parser.text})
            return
        events = [event.to_dict() for event in parser.close()]
        telling = parser.result()
        usage = self.teller.last_usage.to_dict() if self.teller.last_usage is not None else {}
        usage["seconds"] = time.perf_counter() - start
        if usage.get("first_token_seconds") is None:
            usage["first_token_seconds"] = first
        usage["chunks"] = tokens
        meta = {
            **self.teller.describe(),
            "sampling": sampling.to_dict(),
            "usage": usage,
            "images": len(images),
        }
        telling.meta = meta
        verdict = telling.validate(image_sizes=sizes)
        events.append(
            {"event": "done", "telling": telling.to_dict(verdict), "meta": meta, "raw": telling.raw}
        )
        job.push(events)
