"""Several servers as one storyteller: a data-parallel fleet (vLLM replicas, ``transformers serve``, any mix).

:meth:`FleetTeller.connect` takes the endpoints (``tell-dataset --endpoint A --endpoint B``,
or ``--endpoint A,B``) and holds one :class:`~storyreasoning.tell.openai.OpenAITeller` per
endpoint; :meth:`FleetTeller.tell_many` tells a batch through all of them:

* **one model**: at start every endpoint is asked for its models. The model is the one
  named (``--served-model``) or the first endpoint's first; an endpoint that answers
  without it stops the run before any story, with what each endpoint serves. Endpoints
  that do not answer start out of service (said once) and are asked again later.
* **balanced by load**: each story goes to the endpoint in service with the fewest
  requests in flight (the first given on a tie), at most ``concurrency`` on each.
* **a failed endpoint is taken out**: a story that fails at its endpoint (a refused
  connection, a timeout, 5xx, a stream broken part way: ``TellError.at_endpoint``) takes
  that endpoint out of service for ``backoff`` seconds, doubled for each failure in a row
  (at most :data:`MAX_BACKOFF`), and goes back to the front of the queue, so another
  endpoint tells it. When its time is up the endpoint is asked for its models (a probe:
  no story is risked on it) and comes back when it lists the model. A story is tried at
  most ``retries + 1`` times over the fleet; a failure of the story itself (an unreadable
  image, a malformed answer) is not retried.
* **every endpoint down**: stories wait for the first endpoint back; once every endpoint
  has failed ``retries + 1`` times in a row the stories end with the last failure (a batch
  run then stops, as with one endpoint, and the same command continues it).

Every story is yielded exactly once, with its telling (whose ``meta`` names the endpoint
that told it) or its last failure. The endpoints' own retries are off: after a failure
another endpoint is a better retry than the same one. Ours, not a library's: the SDK and
its HTTP client balance nothing across servers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..errors import StoryReasoningError, UsageError
from .base import Prompt, Sampling, Story, Teller, TellError

MAX_BACKOFF = 60.0  # seconds an endpoint stays out at most before it is asked again
_UNKNOWN = "(not yet known)"  # the model of an endpoint teller before the fleet agrees on one

_log = logging.getLogger("storyreasoning.fleet")


def split_endpoints(given: str | Sequence[str] | None) -> list[str]:
    """The endpoints of ``--endpoint`` (repeated, or a comma list), in order; one clear error for a repeat."""
    if given is None:
        return []
    from ..settings import comma_items
    from .openai import normalize_endpoint

    out = comma_items(given)

    seen: dict[str, str] = {}
    for url in out:
        key = normalize_endpoint(url)
        if key in seen:
            raise UsageError(f"--endpoint {url} is given twice (as {seen[key]}); give each server once")
        seen[key] = url
    return out


@dataclass
class _Endpoint:
    teller: Any  # OpenAITeller
    in_flight: int = 0
    failures: int = 0  # in a row, stories and probes
    out_until: float | None = None  # out of service until then (monotonic); None: in service
    probing: bool = False
    gone: bool = False  # answers without the model: out for good
    last: str = ""  # its last failure

    @property
    def url(self) -> str:
        return self.teller.endpoint


@dataclass
class _Work:
    story: Story
    tries: int = 0
    failure: TellError | None = None


class FleetTeller(Teller):
    """Tell stories through several OpenAI-compatible endpoints serving the same model (see the module)."""

    backend = "openai"

    def __init__(
        self,
        tellers: Sequence[Any],
        *,
        model: str,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 1.0,
        warn: Callable[[str], None] = _log.warning,
    ) -> None:
        if not tellers:
            raise UsageError("a fleet needs at least one --endpoint")
        self.endpoints = [_Endpoint(teller) for teller in tellers]
        self.model = model
        self.concurrency = max(1, int(concurrency))
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self._warn = warn
        for endpoint in self.endpoints:
            endpoint.teller.model = model
            endpoint.teller.warn = warn

    @classmethod
    def connect(
        cls,
        endpoints: Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        deadline: float | None = None,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 1.0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        warn: Callable[[str], None] = _log.warning,
    ) -> FleetTeller:
        """A fleet of ``endpoints`` that all serve ``model`` (None: the first endpoint's first model).

        Raises :class:`UsageError` when an endpoint answers without the model, and a
        :class:`TellError` (``at_endpoint``) when none answers.
        """
        from .openai import OpenAITeller

        tellers = [
            OpenAITeller(
                url,
                model=model or _UNKNOWN,
                api_key=api_key,
                timeout=timeout,
                deadline=deadline,
                concurrency=concurrency,
                retries=0,
                backoff=backoff,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
            )
            for url in split_endpoints(endpoints)
        ]
        with ThreadPoolExecutor(max_workers=len(tellers) or 1) as pool:
            answers = list(pool.map(_models_or_failure, tellers))
        listed = [(t, a) for t, a in zip(tellers, answers, strict=True) if isinstance(a, list)]
        chosen = model or next((a[0] for _, a in listed if a), None)
        problem: StoryReasoningError | None = None
        if not listed:
            failures = "; ".join(str(a) for a in answers)
            problem = TellError(f"no endpoint answered ({failures})", at_endpoint=True)
        elif chosen is None:
            problem = UsageError(
                f"the server at {listed[0][0].endpoint} lists no models; start it with a model or name one "
                "with --served-model"
            )
        elif any(chosen not in a for _, a in listed):
            served = "; ".join(f"{t.endpoint}: {', '.join(a) or 'none'}" for t, a in listed)
            problem = UsageError(
                f"the endpoints do not all serve {chosen} ({served}); serve the same model on every --endpoint"
                + ("" if model else ", or name it with --served-model")
            )
        if problem is not None:
            for teller in tellers:
                teller.close()
            raise problem
        fleet = cls(
            tellers, model=chosen, concurrency=concurrency, retries=retries, backoff=backoff, warn=warn
        )
        now = time.monotonic()
        for endpoint, answer in zip(fleet.endpoints, answers, strict=True):
            if not isinstance(answer, list):
                fleet._take_out(endpoint, str(answer), now)
        return fleet

    # -- Teller ------------------------------------------------------------------------------
    @property
    def warn(self) -> Callable[[str], None]:
        return self._warn

    @warn.setter
    def warn(self, value: Callable[[str], None]) -> None:
        """How the fleet (and each endpoint) says a notice: an endpoint out or back, a server ignoring n."""
        self._warn = value
        for endpoint in self.endpoints:
            endpoint.teller.warn = value

    def describe(self) -> dict:
        out = {k: v for k, v in self.endpoints[0].teller.describe().items() if k != "endpoint"}
        out["endpoints"] = [endpoint.url for endpoint in self.endpoints]
        return out

    def check(self) -> None:
        """Raise a :class:`TellError` (``at_endpoint``) when no endpoint is in service, after asking those out once."""
        if any(e.out_until is None and not e.gone for e in self.endpoints):
            return
        now = time.monotonic()
        for endpoint in self.endpoints:
            if endpoint.out_until is not None and not endpoint.gone:
                self._probed(endpoint, _models_or_failure(endpoint.teller), now)
        if not any(e.out_until is None and not e.gone for e in self.endpoints):
            failures = "; ".join(e.last for e in self.endpoints if e.last)
            raise TellError(f"no endpoint is up ({failures})", at_endpoint=True)

    def stream(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[str]:
        """One story's text from the least busy endpoint in service (no failover: use :meth:`tell`)."""
        live = [e for e in self.endpoints if e.out_until is None and not e.gone] or self.endpoints
        endpoint = min(live, key=lambda e: e.in_flight)
        yield from endpoint.teller.stream(images, prompt=prompt, sampling=sampling)
        self.last_usage = endpoint.teller.last_usage

    def tell(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Any:
        """One story, with the fleet's failover."""
        for _, result in self.tell_many([Story("story", images)], prompt=prompt, sampling=sampling):
            if isinstance(result, TellError):
                raise result
            return result
        raise AssertionError("unreachable: tell_many yields every story")

    def tell_samples(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling(), n: int = 1
    ) -> list[Any]:
        """``n`` candidates of one story (see :meth:`OpenAITeller.tell_samples`), with the fleet's failover."""
        stories = [Story("story", images)]
        for _, result in self.tell_many(stories, prompt=prompt, sampling=sampling, samples=n):
            if isinstance(result, TellError):
                raise result
            return result
        raise AssertionError("unreachable: tell_many yields every story")

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.teller.close()

    # -- the fleet -----------------------------------------------------------------------------
    def _take_out(self, endpoint: _Endpoint, why: str, now: float) -> None:
        endpoint.failures += 1
        endpoint.last = why
        if endpoint.out_until is not None:
            endpoint.out_until = max(endpoint.out_until, now + self._pause(endpoint))
            return
        endpoint.out_until = now + self._pause(endpoint)
        self._warn(
            f"warning: endpoint {endpoint.url} taken out of service ({why}); asked again in "
            f"{self._pause(endpoint):g} s, its stories go to the others"
        )

    def _pause(self, endpoint: _Endpoint) -> float:
        return min(MAX_BACKOFF, self.backoff * 2 ** max(0, endpoint.failures - 1))

    def _probed(self, endpoint: _Endpoint, answer: list[str] | TellError, now: float) -> None:
        endpoint.probing = False
        if isinstance(answer, TellError):
            self._take_out(endpoint, str(answer), now)
        elif self.model not in answer:
            endpoint.gone = True
            self._warn(
                f"warning: endpoint {endpoint.url} serves {', '.join(answer) or 'no model'}, not {self.model}; "
                "it is left out of this run"
            )
        else:
            endpoint.out_until = None
            self._warn(f"endpoint {endpoint.url} is back in service")

    def _exhausted(self) -> bool:
        """Every endpoint is out and has failed as often in a row as a story may be tried."""
        return all(
            e.gone or (e.out_until is not None and not e.probing and e.failures > self.retries)
            for e in self.endpoints
        )

    def tell_many(
        self,
        stories: Iterable[Story],
        *,
        prompt: Prompt = Prompt(),
        sampling: Sampling = Sampling(),
        samples: int = 1,
    ) -> Iterator[tuple[Story, Any]]:
        """Yields ``(story, telling | [telling, …] | TellError)`` once per story, as each finishes.

        Stories are drawn from ``stories`` only as slots free up. Leaving the loop early
        ends the requests in flight and closes the fleet.
        """
        source = iter(stories)
        exhausted = False
        queue: deque[_Work] = deque()  # stories to try again, before new ones
        pending: dict[Future, tuple[_Endpoint, _Work | None]] = {}  # None: a probe
        workers = (self.concurrency + 1) * len(self.endpoints)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storyreasoning-fleet")
        try:
            while True:
                now = time.monotonic()
                for endpoint in self.endpoints:  # those whose time out is up are asked for their models
                    due = (
                        endpoint.out_until is not None
                        and endpoint.out_until <= now
                        and (queue or not exhausted)
                    )
                    if due and not endpoint.gone and not endpoint.probing:
                        endpoint.probing = True
                        pending[pool.submit(_models_or_failure, endpoint.teller)] = (endpoint, None)
                if self._exhausted():  # nothing will tell them: each story ends with its failure
                    while queue:
                        work = queue.popleft()
                        yield work.story, work.failure
                    if not exhausted:
                        story = next(source, None)
                        if story is not None:
                            yield story, self._down()
                            continue
                        exhausted = True
                while queue or not exhausted:
                    live = [
                        e for e in self.endpoints if e.out_until is None and e.in_flight < self.concurrency
                    ]
                    if not live:
                        break
                    if queue:
                        work = queue.popleft()
                    else:
                        story = next(source, None)
                        if story is None:
                            exhausted = True
                            break
                        work = _Work(story)
                    endpoint = min(live, key=lambda e: e.in_flight)  # the first given on a tie
                    endpoint.in_flight += 1
                    work.tries += 1
                    future = pool.submit(_tell_one, endpoint.teller, work.story, prompt, sampling, samples)
                    pending[future] = (endpoint, work)
                if not pending:
                    if not queue and exhausted:
                        return
                    waits = [e.out_until for e in self.endpoints if e.out_until is not None and not e.gone]
                    time.sleep(max(0.0, min(waits) - time.monotonic()) if waits else 0.05)
                    continue
                waits = [
                    e.out_until
                    for e in self.endpoints
                    if e.out_until is not None and not e.probing and not e.gone
                ]
                timeout = (
                    max(0.0, min(waits) - time.monotonic()) if waits and (queue or not exhausted) else None
                )
                done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
                now = time.monotonic()
                for future in done:
                    endpoint, work = pending.pop(future)
                    result = future.result()
                    if work is None:
                        self._probed(endpoint, result, now)
                        continue
                    endpoint.in_flight -= 1
                    if isinstance(result, TellError) and result.at_endpoint:
                        self._take_out(endpoint, str(result), now)
                        work.failure = result
                        if work.tries <= self.retries:
                            queue.appendleft(work)
                            continue
                    elif not isinstance(result, TellError):
                        endpoint.failures = 0
                    yield work.story, result
        finally:
            if pending:  # abandoned: end the requests in flight
                for future in pending:
                    future.cancel()
                self.close()
            pool.shutdown(wait=True)

    def _down(self) -> TellError:
        failures = "; ".join(f"{e.url}: {e.last}" for e in self.endpoints if e.last)
        return TellError(f"every endpoint is out of service ({failures})", at_endpoint=True)


def _models_or_failure(teller: Any) -> list[str] | TellError:
    try:
        return teller.list_models()
    except TellError as exc:
        return exc


def _tell_one(teller: Any, story: Story, prompt: Prompt, sampling: Sampling, samples: int) -> Any:
    try:
        if samples > 1:
            return teller.tell_samples(story.images, prompt=prompt, sampling=sampling, n=samples)
        return teller.tell(story.images, prompt=prompt, sampling=sampling)
    except TellError as exc:
        return exc
    except StoryReasoningError as exc:  # an unreadable image, …: the story's, not the endpoint's
        return TellError(str(exc))
    except Exception as exc:  # one story's failure must not end the run
        return TellError(f"telling failed: {type(exc).__name__}: {exc}")


__all__ = ["MAX_BACKOFF", "FleetTeller", "split_endpoints"]
