"""Tell jobs: a storyteller's stream in a worker thread, its events in a list the page reads.

A :class:`Job` runs :meth:`~storyreasoning.tell.Teller.stream` in its own thread and
feeds each chunk to a :class:`~storyreasoning.format.StreamParser` (constant work per
chunk). It appends ``{"event": "chunk", "text", "tokens"}``, then the parser's events,
and ends with exactly one final event: ``done`` (the telling, its meta and the raw
text), ``error`` (the one-line message and the partial text) or ``cancelled`` (the
partial text). Events are kept in order in the job, so the page may connect after the
job started, or reconnect (a reloaded page does), and still read every event from any
index.

At most ``max_jobs`` stories are told at once: a job counts until its final event, so
a cancelled one frees its place at once. Cancelling appends ``cancelled`` and ends the
request to the server from the cancelling thread: a job of a server teller streams
through a teller of its own (``job_teller``), closed there, which shuts the request's
socket and wakes the worker even when the server sends nothing. Other tellers (local
weights, the baseline) see the flag at their next chunk; their stream (a generator) is
closed then. Workers still ending after their job was cancelled are counted apart: twice
``max_jobs`` of them refuse a new job until they are gone, so cancelling again and again
cannot pile up requests to the storyteller.

A job nobody reads is cancelled: when no page has been connected to its event stream
for ``grace`` seconds (since it started, or since the last reader left), so a closed
tab cannot hold a place for the rest of the story. Finished jobs are forgotten ``ttl``
seconds later (the oldest sooner when more than ``MAX_KEPT`` are kept). A local-weights
teller runs one job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
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


def one_line(message: str) -> str:
    """``message`` as the one line an ``error`` event promises: each run of whitespace (a server's
    multi-line error text included) made one space."""
    return " ".join(message.split())


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
        self.readers = 0  # event streams open on the job now
        self.unread_since: float | None = self.created  # when the last reader left (or the job began)
        self._teller: Teller | None = None  # the job's own teller, closed to end its request
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
        """Whether the worker thread is still alive (it may be ending a cancelled job)."""
        return self.thread is not None and self.thread.is_alive()

    # -- readers (the event streams open on it) --------------------------------------------------
    def attach(self) -> None:
        with self._lock:
            self.readers += 1

    def detach(self) -> bool:
        """A reader left; True when it was the last (the job is unread from now on)."""
        with self._lock:
            self.readers -= 1
            if self.readers:
                return False
            self.unread_since = time.monotonic()
            return True

    def unread_for(self) -> float | None:
        """Seconds nobody has read the job, while it goes on; None while it is read or once it ended."""
        with self._lock:
            if self.readers or self.finished_at is not None or self.unread_since is None:
                return None
            return time.monotonic() - self.unread_since

    # -- the request to the server ---------------------------------------------------------------
    def use(self, teller: Teller) -> bool:
        """The worker streams through ``teller``, a teller of its own; False when the job was cancelled first."""
        with self._lock:
            if self.cancel_requested.is_set():
                return False
            self._teller = teller
        return True

    def stop(self) -> None:
        """Raise the cancel flag and close the job's own teller, which ends its request now.

        The flag is raised before the lock is taken, so a worker calling :meth:`use` at the
        same moment either sees it or hands over a teller that is closed here.
        """
        self.cancel_requested.set()
        with self._lock:
            teller = self._teller
        if teller is not None:
            with contextlib.suppress(Exception):
                teller.close()  # shuts the request's socket: the worker's read wakes at once

    def wake_readers(self) -> None:
        """Wake the event streams waiting on the job now (the server is shutting down)."""
        with self._lock:
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

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
    """Starts, finds, cancels and forgets tell jobs for one teller.

    ``job_teller``: makes a teller for one job (closed when the job ends), so that a
    cancel can end that job's request without touching the others'; None: every job
    streams through ``teller``. ``grace``: seconds a job may go unread before it is
    cancelled (None: never).
    """

    def __init__(
        self,
        teller: Teller,
        *,
        max_jobs: int,
        ttl: float,
        serial: bool = False,
        grace: float | None = 30.0,
        job_teller: Callable[[], Teller] | None = None,
    ) -> None:
        self.teller = teller
        self.max_jobs = max_jobs
        self.ttl = ttl
        self.grace = grace
        self.job_teller = job_teller
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._serial = threading.Lock() if serial else None  # local weights: one generate at a time
        self._closing = False
        self.streams_ended = False  # the server is shutting down: event streams return
        # the reaper: one thread for all jobs, cancelling those unread for ``grace`` seconds
        self._watched: list[tuple[float, int, Job]] = []  # a heap of (deadline, order, job)
        self._order = 0
        self._reaper: threading.Thread | None = None
        self._wake = threading.Condition(self._lock)

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
            telling = sum(not job.finished for job in self._jobs.values())
            if telling >= self.max_jobs:
                raise ApiError(
                    429,
                    f"{telling} stories are being told already (the most at once); "
                    "wait for one to finish or cancel it",
                )
            ending = sum(job.finished and job.running for job in self._jobs.values())
            if ending >= 2 * self.max_jobs:  # cancelled, but their teller has not let go yet
                raise ApiError(
                    429,
                    f"{ending} cancelled stories are still ending their requests to the storyteller; "
                    "try again in a few seconds",
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
        self._watch(job)  # the page that asked connects at once; if it never does, the job ends
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
        self._cancel(job)
        return job

    def _cancel(self, job: Job, reason: str | None = None) -> None:
        """Append ``cancelled`` (unless the job ended already) and end the job's request now."""
        event = {"event": "cancelled", "partial": job.partial}
        if reason:
            event["reason"] = reason
        job.cancel_requested.set()
        job.finish(event)
        job.stop()

    # -- readers -------------------------------------------------------------------------------------
    def attach(self, job: Job) -> Callable[[], None]:
        """A page reads the job's events; call what is returned when it stops (more than once is fine)."""
        job.attach()
        left = False

        def detach() -> None:
            nonlocal left
            if not left:
                left = True
                if job.detach():
                    self._watch(job)

        return detach

    def _watch(self, job: Job) -> None:
        """Cancel ``job`` ``grace`` seconds from now if nobody has read it meanwhile.

        The job goes on a heap of deadlines that one reaper thread (started at the first
        job, stopped by :meth:`close`) sleeps on: no thread per job.
        """
        if self.grace is None or job.finished:
            return
        with self._lock:
            if self._closing:
                return
            self._order += 1
            heapq.heappush(self._watched, (time.monotonic() + self.grace, self._order, job))
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap_loop, name="studio-tell-reaper", daemon=True
                )
                self._reaper.start()
            self._wake.notify()

    def _reap_loop(self) -> None:
        while True:
            due: list[Job] = []
            with self._lock:
                if self._closing:
                    return
                now = time.monotonic()
                while self._watched and self._watched[0][0] <= now:
                    due.append(heapq.heappop(self._watched)[2])
                if not due:
                    wait = self._watched[0][0] - now if self._watched else None
                    self._wake.wait(wait)
                    continue
            for job in due:
                with contextlib.suppress(Exception):
                    self._reap(job)

    def _reap(self, job: Job) -> None:
        unread = job.unread_for()
        # read now, ended, or a reader came and left meanwhile (the timer its leaving started decides)
        if unread is None or unread < self.grace - 0.05:
            return
        log.info("tell job %s: no page read it for %g s; cancelled", job.id, self.grace)
        self._cancel(
            job, f"no page followed this story for {self.grace:g} seconds, so the studio cancelled it"
        )

    def end_streams(self) -> None:
        """The server is shutting down: event streams end now (:attr:`streams_ended`), not at its timeout."""
        with self._lock:
            self.streams_ended = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.wake_readers()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every job and wait a little for the workers to stop."""
        with self._lock:
            self._closing = True
            jobs = list(self._jobs.values())
            self._watched.clear()
            self._wake.notify_all()
            reaper = self._reaper
        if reaper is not None:
            reaper.join(timeout)
        for job in jobs:
            self._cancel(job)
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    # -- the worker ---------------------------------------------------------------------------------
    def _run(self, job: Job, images: list[Any], sizes: list[tuple[int, int]], prompt, sampling) -> None:
        with self._serial or contextlib.nullcontext():
            if job.cancel_requested.is_set():
                return
            teller = self.teller
            try:
                if self.job_teller is not None:
                    teller = self.job_teller()
                    if not job.use(teller):
                        return  # cancelled while it was being made (closed below)
                self._tell(job, teller, images, sizes, prompt, sampling)
            except Exception as exc:  # the page must hear of every failure
                log.exception("tell job %s failed", job.id)
                job.finish(
                    {
                        "event": "error",
                        "message": one_line(
                            f"the studio failed while telling the story ({type(exc).__name__}: {exc}); "
                            "see the studio's log"
                        ),
                        "partial": job.partial,
                    }
                )
            finally:
                if teller is not self.teller:
                    with contextlib.suppress(Exception):
                        teller.close()

    def _tell(self, job: Job, teller: Teller, images, sizes, prompt: Prompt, sampling: Sampling) -> None:
        parser = StreamParser()
        start = time.perf_counter()
        first: float | None = None
        tokens = 0
        stream = None
        try:
            stream = teller.stream(images, prompt=prompt, sampling=sampling)
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
        # TellError (server down, stream broken, its teller closed by a cancel), an unreadable image
        except StoryReasoningError as exc:
            partial = parser.text or (exc.partial if isinstance(exc, TellError) else "")
            job.finish({"event": "error", "message": one_line(str(exc)), "partial": partial})
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
        usage = teller.last_usage.to_dict() if teller.last_usage is not None else {}
        usage["seconds"] = time.perf_counter() - start
        if usage.get("first_token_seconds") is None:
            usage["first_token_seconds"] = first
        usage["chunks"] = tokens
        meta = {
            **teller.describe(),
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
