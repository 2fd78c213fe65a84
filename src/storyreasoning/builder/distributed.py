"""The build's perception on Ray (``storyreasoning build --ray auto|ADDRESS``): the same dataset, made faster.

Where a build runs never changes its data: a ``--ray`` build writes the very story
folders, build.json entry, skipped.jsonl, errors.jsonl and report that a single-process
build of the same frames and settings writes. Only perception moves; the rest is the
single-process loop of :mod:`.pipeline`.

**The stages.** The driver (the process that runs ``storyreasoning build``) finds the
stories, claims its build.json entry and leaves out, as any build does, the stories
already built (their folders exist), skipped for want of a person under the same entry
(skipped.jsonl) or refused. The rest become a Ray Dataset of small rows (a story's
number and its frame paths), then

1. **read**: one actor pinned to the driver's node reads each story's frame files, their
   bytes and sizes. The frames travel on as bytes, never as paths: the workers need no
   shared file system, only the driver's machine needs the frames.
2. **perceive**: ``map_batches`` with a pool of actors (``--ray-workers``, each asking
   ``--ray-gpus-per-worker`` GPUs and one CPU). Each actor makes its perceiver once, in its
   constructor, with :func:`~storyreasoning.builder.perceivers.make_perceiver` and the
   build's settings: the function and the settings the single-process build uses. So the
   models (detector, embedder, segmenter, dlib) load once per actor, on the GPU Ray gave
   it (``--device auto`` picks it). An actor sees a story from its bytes (an error still
   names the file) and sends back what it saw, pickled, with the bytes and the sizes. A
   story that fails is sent back as its error, so one bad story never stops the others.
3. **write**, on the driver: the results come back in story order (Ray Data's
   ``preserve_order``), and no faster than the writers take them: at most
   ``--concurrency + 1`` perceived stories are held, as in the single-process loop, which
   writes them with the same code: ``--concurrency`` stories in flight against the
   endpoint, each story folder written whole (a temporary folder renamed into place), the
   same accounts. The driver also runs one short task first, on a worker like the others,
   that makes the perceiver to describe it for build.json (so the record says what the
   workers run, faces included when dlib is installed there); the build runs it before
   any video is cut, so a ``--device`` the workers' GPUs cannot serve is refused up front.

**Resume.** Story folders, build.json, skipped.jsonl and errors.jsonl are written by the
driver only, under ``--out`` on the driver's machine. A build stopped in any way (Ctrl-C,
a killed driver, a lost node, the endpoint rule) keeps every finished story; Ray ends the
workers of a driver that is gone. Run the same command again and only the stories not
yet built are sent to the workers. The workers keep nothing that a resume needs.

**Where Ray comes from.** ``--ray auto`` connects to the cluster that ``RAY_ADDRESS``
names, else to the one that ``ray start`` last started on this machine, else starts a new
local Ray on this machine (all its CPUs and GPUs), which the build shuts down when it
ends. (Ray's own ``address="auto"`` only connects, and fails when no cluster runs.)
``--ray HOST:PORT`` connects to the cluster whose head node listens there (6379 unless
``ray start --port`` said otherwise); an address where nothing answers is one line. From
Python, a Ray already started by ``ray.init`` is used as it is and left running.

**On a cluster.** Install ``storyreasoning[ray]`` with the extras perception needs
(``vision``, ``faces``, ``train`` for a ``--detector``) and the same version on every
node, and make the models reachable on each (the hub cache, or the same folder paths).
Then::

    head$    ray start --head --port 6379
    worker$  ray start --address HEAD:6379
    head$    storyreasoning build FRAMES --out OUT --ray auto            # or --ray HEAD:6379

The driver must run on a node of the cluster (it reads the frames there and writes
``--out`` there); Ray Client addresses (``ray://``) are refused for that reason. Ray's
own messages go to its logs (``/tmp/ray/session_latest/logs`` on each node), not to the
terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import StoryReasoningError, UsageError
from .pipeline import Perceived, error_trace, read_frames
from .raw import RawStory

EXTRA = "pip install 'storyreasoning[ray]'"
DEFAULT_PORT = 6379


class FrameBytes(bytes):
    """A frame's bytes that remember the file they were read from, so that what a worker says about a
    frame names the file, as the single-process build does (perceivers take bytes as they take paths)."""

    path: str

    def __new__(cls, data: bytes, path: str) -> FrameBytes:
        made = super().__new__(cls, data)
        made.path = path
        return made

    def __reduce__(self):
        return (FrameBytes, (bytes(self), self.path))


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or one line naming the extra."""
    try:
        import ray
        import ray.data  # Ray without its data library is not enough
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "ray").split(".")[0]
        raise UsageError(f"--ray needs Ray Data ({missing} is not installed): {EXTRA}") from None
    return ray


# -- connecting ---------------------------------------------------------------------------------------------


def _host_port(address: str) -> tuple[str, int]:
    host, colon, port = address.rpartition(":")
    if not colon:
        return address, DEFAULT_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise UsageError(
            f"--ray {address}: the port is not a number; give auto or the head node's HOST:PORT "
            f"(e.g. 10.0.0.5:{DEFAULT_PORT})"
        ) from None


def _reachable(address: str) -> None:
    """Refuse in one line an address where nothing listens (Ray itself would retry for a minute)."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=5):
            return
    except OSError as exc:
        why = (
            "connection refused"
            if isinstance(exc, ConnectionRefusedError)
            else "no answer"
            if isinstance(exc, TimeoutError)
            else (exc.strerror or str(exc) or type(exc).__name__)
        )
    raise UsageError(
        f"cannot reach a Ray cluster at {address} ({why}); start one there with `ray start --head`, check the "
        f"address (the head node's HOST:PORT, {DEFAULT_PORT} unless `ray start --port` said otherwise), or "
        "use --ray auto for a local Ray"
    )


def connect(address: str) -> Callable[[], None]:
    """Connect this process to Ray as ``--ray`` says (see the module doc) and return what disconnects it:
    ``ray.shutdown`` when this call started or joined Ray (a local Ray it started stops with it; a
    cluster keeps running), nothing when Ray was already initialised here."""
    # no Ray call may start a new Ray by itself (its "auto-connect"): after Ctrl-C, the build's shutdown and
    # a perceiving thread still waiting on Ray would race, and the thread would start one
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    ray = require_ray()
    if ray.is_initialized():
        return lambda: None
    if address.startswith("ray://"):
        raise UsageError(
            f"--ray {address}: Ray Client addresses are not supported: the build reads the frames and writes "
            "--out on the driver's machine, which must be a node of the cluster; run the build on one "
            "(the head node) with --ray auto, or give the head node's HOST:PORT"
        )
    if address != "auto":
        _reachable(address)
    # Ray's C++ core writes its notes (one per actor) straight to the terminal: to its logs only
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with _terminal_quiet():  # and the line saying so
            ray.init(
                address=None if address == "auto" else address,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
    except Exception as exc:  # whatever Ray raises, it is the cluster the user named that failed
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = "the cluster" if address == "auto" else f"the Ray cluster at {address}"
        raise UsageError(
            f"cannot connect to {where} ({said}); check that it runs (`ray status`), `ray stop` a stale one, "
            "or unset RAY_ADDRESS to start a local Ray with --ray auto"
        ) from None
    return ray.shutdown


@contextlib.contextmanager
def _terminal_quiet() -> Iterator[None]:
    """Standard error, at the file-descriptor level (where C++ writes), sent nowhere for a while."""
    sys.stderr.flush()
    saved, nowhere = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(nowhere, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(nowhere)


# -- the workers ----------------------------------------------------------------------------------------------


def _describe(settings: Any) -> tuple[str, Any]:
    """On a worker: the perceiver's description, or the error that made it fail."""
    from .perceivers import make_perceiver

    try:
        return "ok", make_perceiver(settings).describe()
    except Exception as exc:
        return "error", _portable(exc)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _Reader:
    """Ray Data stage 1, pinned to the driver's node: a story's frame files as bytes and sizes."""

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = []
        for payload in batch["payload"]:
            paths = pickle.loads(payload)
            try:
                data, sizes = read_frames([Path(p) for p in paths])
                out.append(
                    pickle.dumps(
                        ([FrameBytes(d, p) for d, p in zip(data, paths, strict=True)], sizes, None, None)
                    )
                )
            except Exception as exc:
                out.append(pickle.dumps((None, None, _portable(exc), error_trace(exc))))
        return {"index": batch["index"], "payload": np.array(out, dtype=object)}


class _Seer:
    """Ray Data stage 2: an actor holding the build's perceiver (its models loaded once, here)."""

    def __init__(self, settings: Any) -> None:
        from .perceivers import make_perceiver

        self.broken: BaseException | None = None
        try:
            self.perceiver = make_perceiver(settings)
        except Exception as exc:  # told to the driver with the first story, which stops the build
            self.broken = _portable(exc)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = []
        for payload in batch["payload"]:
            images, sizes, error, trace = pickle.loads(payload)
            if self.broken is not None:
                out.append(pickle.dumps(("broken", self.broken)))
                continue
            if error is None:
                try:
                    frames = list(self.perceiver.see(images))
                except Exception as exc:
                    error, trace = _portable(exc), error_trace(exc)
            if error is not None:
                out.append(pickle.dumps(("failed", (error, trace))))
            else:
                out.append(pickle.dumps(("seen", ([bytes(i) for i in images], sizes, frames))))
        return {"index": batch["index"], "payload": np.array(out, dtype=object)}


# -- the perception stage ---------------------------------------------------------------------------------------


class RayPerception:
    """The build's perception on the Ray this process is connected to (:func:`connect`), for
    :func:`~storyreasoning.builder.pipeline.build_dataset` in place of a perceiver.

    ``settings`` are the build's :class:`~storyreasoning.builder.settings.BuildSettings`: each
    worker makes its perceiver from them. ``workers`` perception actors (default: as many as
    the cluster's GPUs hold at ``gpus_per_worker``, else its CPUs less one, and never more than
    the stories), each asking ``gpus_per_worker`` GPUs (default: 1 when the cluster has a GPU,
    else 0) and one CPU.
    """

    def __init__(
        self, settings: Any, *, workers: int | None = None, gpus_per_worker: float | None = None
    ) -> None:
        ray = require_ray()
        if not ray.is_initialized():
            raise UsageError(
                "RayPerception needs Ray: call storyreasoning.builder.distributed.connect('auto') (or ray.init) first"
            )
        self.settings = settings
        resources = ray.cluster_resources()
        self.cpus, self.gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        self.gpus_per_worker = float(gpus_per_worker if gpus_per_worker is not None else self.gpus > 0)
        if self.gpus_per_worker > 0:
            fits = int(self.gpus // self.gpus_per_worker)
        else:
            fits = max(1, int(self.cpus) - 1)
        self.workers = int(workers) if workers is not None else max(1, fits)
        self._check()
        self._description: dict | None = None

    def _check(self) -> None:
        count = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        if self.gpus_per_worker > 0 and self.workers * self.gpus_per_worker > self.gpus:
            raise UsageError(
                f"--ray: {count} at {self.gpus_per_worker:g} GPU each need "
                f"{self.workers * self.gpus_per_worker:g} GPUs, the cluster has {self.gpus:g}; "
                "lower --ray-workers or --ray-gpus-per-worker (0: perceive on CPUs)"
            )
        if self.workers > self.cpus:
            raise UsageError(
                f"--ray: {count} need a CPU each, the cluster has {self.cpus:g}; lower --ray-workers"
            )

    def _remote_options(self) -> dict:
        return {"num_cpus": 1, "num_gpus": self.gpus_per_worker}

    def summary(self) -> str:
        """Where perception runs, in one line (the build says it before it starts)."""
        ray = require_ray()
        each = f"{self.gpus_per_worker:g} GPU each" if self.gpus_per_worker else "on CPUs"
        return (
            f"perceiving on Ray at {ray.get_runtime_context().gcs_address}: {self.workers} "
            f"worker{'s' if self.workers != 1 else ''} {each} (the cluster: {self.cpus:g} CPUs, {self.gpus:g} GPUs)"
        )

    def describe(self) -> dict:
        """The perceiver as a worker makes it (asked of a worker once: the record says what the workers run)."""
        if self._description is None:
            ray = require_ray()
            task = ray.remote(**self._remote_options())(_describe)
            status, value = ray.get(task.remote(self.settings))
            if status == "error":
                raise value
            self._description = value
        return self._description

    def perceive_stories(self, stories: Sequence[RawStory]) -> Iterator[Perceived]:
        """Each story perceived on the workers, in the order given, as the driver asks for the next."""
        if not stories:
            return
        ray = require_ray()
        from ray.data import ActorPoolStrategy

        quiet = [logging.getLogger(name) for name in ("ray", "ray.data")]
        levels = [log.level for log in quiet]
        for log in quiet:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings():  # Ray Data's own settings, deprecated by Ray itself
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        try:
            # from_items copies the context: the dataset keeps these, the caller's context is given back
            context.execution_options.preserve_order = True
            context.enable_progress_bars = False  # the build shows its own
            rows = [
                {"index": k, "payload": pickle.dumps([str(p) for p in story.frames])}
                for k, story in enumerate(stories)
            ]
            dataset = ray.data.from_items(rows)
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
        here = ray.get_runtime_context().get_node_id()
        dataset = dataset.map_batches(
            _Reader, batch_size=1, compute=ActorPoolStrategy(size=1), num_cpus=0, **_on_node(dataset, here)
        )
        dataset = dataset.map_batches(
            _Seer,
            fn_constructor_args=(self.settings,),
            batch_size=1,
            compute=ActorPoolStrategy(size=min(self.workers, len(stories))),
            **self._remote_options(),
        )
        try:
            for row in dataset.iter_rows():
                story = stories[int(row["index"])]
                kind, value = pickle.loads(row["payload"])
                if kind == "broken":
                    raise value
                if kind == "failed":
                    error, trace = value
                    yield Perceived(story, error=error, trace=trace)
                else:
                    data, sizes, frames = value
                    yield Perceived(story, data, sizes, frames)
        except StoryReasoningError:
            raise
        except Exception as exc:
            raise _ray_failure(exc) from None
        finally:
            for log, level in zip(quiet, levels, strict=True):
                log.setLevel(level)


def _on_node(dataset: Any, node_id: str) -> dict:
    """Ray Data's way to pin a stage to one node: a label selector where it takes one (Ray 2.5x), else the
    node-affinity scheduling strategy."""
    import inspect

    if "label_selector" in inspect.signature(dataset.map_batches).parameters:
        return {"label_selector": {"ray.io/node-id": node_id}}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}


def _ray_failure(exc: BaseException) -> BaseException:
    """What the build says when Ray itself fails (a worker lost, an object lost): the innermost cause."""
    seen, cause = set(), exc
    while id(cause) not in seen:
        seen.add(id(cause))
        inner = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(inner, BaseException):
            break
        cause = inner
    if isinstance(cause, StoryReasoningError):
        return cause
    said = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
    return StoryReasoningError(
        f"perception on Ray failed ({type(cause).__name__}: {said}); the finished stories are kept: see Ray's "
        "logs (/tmp/ray/session_latest/logs on each node), then run the same command again to continue"
    )


__all__ = ["FrameBytes", "RayPerception", "connect", "require_ray"]
