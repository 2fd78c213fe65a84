"""Every value a request controls, read and bounded: the body, its JSON fields, headers, query and path.

The rule (``studio/API.md``, "Bounds"): every number, size, length and depth a request
can choose has a bound written here, and a value outside it is refused with a 4xx whose
message names the value, the bound and the fix, before any work is done. Nothing from a
request is trusted to be finite, short or shallow: JSON numbers must be finite and
short, JSON bodies shallow, strings short, indexes small. A new endpoint reads its
inputs through these helpers (JSON fields) or the annotated types below (query and
path parameters, checked by FastAPI), so it is bounded the same way.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from fastapi import Path, Query
from starlette.requests import Request

from .errors import ApiError

# -- the bounds ----------------------------------------------------------------------------------

MAX_JSON_DEPTH = 6  # nesting of a JSON body (the deepest field, image_sizes, is 3)
# '{' and '[' in a JSON body, counted in its bytes before it is parsed (image_sizes needs 1,001):
# 16 MiB of '{},' would be 5.5 million objects, about 800 MB of memory while parsed
MAX_JSON_CONTAINERS = 20_000
MAX_NUMBER_DIGITS = 30  # digits of any number in a JSON body
MAX_TEXT_CHARS = 1_000_000  # a pasted or exported output (the longest told one is ~130,000)
MAX_PROMPT_CHARS = 20_000  # the prompt and the system prompt, each
MAX_LABEL_CHARS = 300  # a title or a teller label
MAX_NAME_CHARS = 100  # a dataset or run name, a split (config.NAME allows 100)
MAX_ID_CHARS = 300  # a story id
MAX_TOKEN_CHARS = 64  # an upload or job id (the server makes them 25 characters long)
MAX_QUERY_CHARS = 200  # a search in story ids
MAX_LIST = 500  # stories per page of a listing
MAX_OFFSET = 10_000_000  # the first story of a page
MAX_FRAME = 10_000  # a frame index
MAX_EVENT_ID = 999_999_999  # Last-Event-ID (the index of an event in a job)
MAX_SIZES = 1000  # [width, height] pairs sent to /api/parse
MAX_SIDE = 1_000_000  # pixels, per side
MAX_NEW_TOKENS = 32768
MAX_TEMPERATURE = 2.0
MAX_SEED = 2**32 - 1

# -- query and path parameters (FastAPI checks them; a refusal is a 400 naming the parameter) ------

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIST)]
Search = Annotated[str, Query(max_length=MAX_QUERY_CHARS)]
Split = Annotated[str, Query(max_length=MAX_NAME_CHARS)]
NameSegment = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
StorySegment = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
StoryQuery = Annotated[str, Query(min_length=1, max_length=MAX_ID_CHARS)]  # `.` and `..`: see catalog.FOLDED
TokenSegment = Annotated[str, Path(min_length=1, max_length=MAX_TOKEN_CHARS)]
FrameIndex = Annotated[int, Path(ge=0, le=MAX_FRAME)]


# -- bodies ------------------------------------------------------------------------------------------


def content_length(request: Request) -> int | None:
    """The declared body size, None when not declared (an absurd one counts as too large)."""
    length = request.headers.get("content-length", "").strip()
    if not length.isdigit():
        return None
    return int(length) if len(length) <= 18 else 10**18


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    too_big = ApiError(413, f"the {what} is larger than {limit / (1024 * 1024):.3g} MB; send less at once")
    length = content_length(request)
    if length is not None and length > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class _Refused(ValueError):
    """A JSON value outside the bounds, raised from the decoder's hooks."""


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number in the request has more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _real(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS + 10:
        raise _Refused(f"a number in the request is longer than {MAX_NUMBER_DIGITS} digits")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]} is too large for a number")
    return value


def _constant(text: str):
    raise _Refused(f"{text} is not a number JSON allows")


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar: 0), without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            break  # deep enough to refuse: no need to walk the rest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_json(data: bytes) -> dict:
    """A request's JSON object: finite numbers of at most 30 digits, nested at most 6 deep, with at most
    :data:`MAX_JSON_CONTAINERS` lists and objects (an upper count: brackets inside strings count too)."""
    if data.count(b"{") + data.count(b"[") > MAX_JSON_CONTAINERS:
        raise ApiError(
            400,
            f"the request holds more than {MAX_JSON_CONTAINERS:,} lists or objects; send the documented fields only",
        )
    try:
        body = json.loads(data, parse_int=_integer, parse_float=_real, parse_constant=_constant)
    except _Refused as exc:
        raise ApiError(400, f"{exc}; send numbers of at most {MAX_NUMBER_DIGITS} digits") from None
    except RecursionError:
        raise ApiError(400, _too_deep()) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request is not valid JSON ({str(exc)[:200]}); send a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request must be a JSON object")
    if depth(body) > MAX_JSON_DEPTH:
        raise ApiError(400, _too_deep())
    return body


def _too_deep() -> str:
    return (
        f"the request nests lists or objects more than {MAX_JSON_DEPTH} deep; send the documented fields only"
    )


async def json_body(request: Request, limit: int) -> dict:
    """The request's JSON object (``Content-Type: application/json``, at most ``limit`` bytes)."""
    from starlette.concurrency import run_in_threadpool

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "send the request as JSON with Content-Type: application/json")
    data = await read_body(request, limit, "request")
    return await run_in_threadpool(parse_json, data)  # a large body is not parsed on the event loop


# -- JSON fields ----------------------------------------------------------------------------------------


def text(body: dict, key: str, limit: int, *, required: bool = False) -> str | None:
    """A string field of at most ``limit`` characters (None when absent or null and not required)."""
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, f"the request has no {key!r}; send it as a string")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise ApiError(400, f"{key!r} is {len(value):,} characters long, more than {limit:,}; shorten it")
    try:  # JSON's \ud800 escape decodes to half of a surrogate pair: no text, and no UTF-8 for it
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            400,
            f"{key!r} holds {value[exc.start]!r} at character {exc.start:,}, half of a UTF-16 surrogate pair "
            "and not text; send valid Unicode",
        ) from None
    return value


def number(
    body: dict,
    key: str,
    default,
    *,
    low: float,
    high: float,
    integer: bool = False,
    nullable: bool = False,
    above_low: bool = False,
):
    """A number field within ``[low, high]`` (``(low, high]`` when ``above_low``); absent or null: ``default``."""
    value = body.get(key, default)
    if value is None:
        return None if nullable else default
    kinds = (int,) if integer else (int, float)
    what = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ApiError(400, f"{key!r} must be {what}, got {value!r:.40}")
    opening = "above" if above_low else "at least"
    if not math.isfinite(value) or value > high or value < low or (above_low and value == low):
        bounds = f"{opening} {_shown(low)} and at most {_shown(high)}"
        raise ApiError(400, f"{key!r} must be {what} {bounds}, got {value!r:.40}")
    return value


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def ids(body: dict, key: str, limit: int, *, required: bool) -> list[str] | None:
    """A list of upload ids (each at most 64 characters), at most ``limit`` of them."""
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key!r} must be a list of upload ids (strings)")
    if any(len(v) > MAX_TOKEN_CHARS for v in value):
        raise ApiError(400, f"{key!r} holds a string longer than an upload id ({MAX_TOKEN_CHARS} characters)")
    if required and not value:
        raise ApiError(400, "upload at least one image first")
    if len(value) > limit:
        raise ApiError(413, f"{len(value)} images is more than the {limit} a story may have; choose fewer")
    return value


def sizes(value: Any) -> list[tuple[int, int]] | None:
    """``image_sizes``: at most 1000 ``[width, height]`` pairs of positive integers below a million."""
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) <= MAX_SIZES
    ok = ok and all(
        isinstance(s, list | tuple)
        and len(s) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < MAX_SIDE for n in s)
        for s in value
    )
    if not ok:
        raise ApiError(
            400,
            f"'image_sizes' must be a list of at most {MAX_SIZES} [width, height] pairs of positive integers "
            f"below {MAX_SIDE:,}",
        )
    return [(int(w), int(h)) for w, h in value]


# -- headers --------------------------------------------------------------------------------------------


def last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` a reconnecting event stream sends: an event index, or None when absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > len(str(MAX_EVENT_ID)) or int(value) > MAX_EVENT_ID:
        raise ApiError(
            400,
            f"Last-Event-ID must be the index of an event (0 to {MAX_EVENT_ID:,}), not {value[:40]!r}; "
            "reconnect without it to read the events from the start",
        )
    return int(value)
