"""The studio's routes: the page, uploads, streamed telling, parsing, export, datasets and runs.

:func:`create_app` builds the FastAPI app for a :class:`~storyreasoning.studio.config.StudioConfig`.
The HTTP contract is ``studio/API.md``. Every response carries a strict
Content-Security-Policy (scripts, styles and connections from this origin only, no
inline code) and ``X-Content-Type-Options: nosniff``. When the server listens on
loopback it answers only requests addressed to a loopback name (no DNS rebinding), and
state-changing requests from another origin are refused, so no other web page can
spend the storyteller or its API key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..errors import StoryReasoningError
from ..format.prompts import ORDERS, SYSTEM_PROMPT
from ..tell.base import Prompt, Sampling, Teller, teller_label
from . import inputs
from .catalog import Datasets, Runs
from .config import IMAGE_TYPES, StudioConfig
from .errors import ApiError
from .inputs import (
    FrameIndex,
    Limit,
    NameSegment,
    Offset,
    Search,
    Split,
    StoryQuery,
    StorySegment,
    TokenSegment,
)
from .jobs import JobManager
from .multipart import read_files
from .uploads import UploadStore

log = logging.getLogger("storyreasoning.studio")

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
KEEP_ALIVE_SECONDS = 15.0


# -- headers, host and origin checks ---------------------------------------------------------------


class Guard:
    """ASGI middleware: security headers on every response; Host and Origin checks on every request."""

    def __init__(self, app, *, allowed_hosts: frozenset[str] | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts  # None: any (the server listens beyond loopback)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message = refusal
            response = JSONResponse({"error": message}, status_code=status)
            await self._send_headers(response, scope, receive, send)
            return
        await self._send_headers(self.app, scope, receive, send)

    async def _send_headers(self, app, scope, receive, send) -> None:
        api = scope.get("path", "").startswith("/api/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
                if api and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await app(scope, receive, send_with_headers)

    def _refusal(self, scope, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        name = _host_name(host)
        if self.allowed_hosts is not None and name not in self.allowed_hosts:
            return (
                400,
                f"this studio answers only requests addressed to this machine, not to {host[:100]!r}; "
                "open it at http://127.0.0.1:PORT/",
            )
        if scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin is not None:
                parts = urlsplit(origin)
                if origin == "null" or parts.netloc.lower() != host.lower():
                    return (
                        403,
                        f"requests from another page ({origin[:100]}) are refused; use the studio's own page",
                    )
        return None


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


MAX_NAME_BYTES = 200  # an export's file name, ".html" included


def _filename(title: str) -> str:
    """The export's file name: the title's letters and digits (any script), ``.``, ``_`` and ``-``."""
    slug = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", title)).strip("-._")[:80]
    # file systems cap a name in bytes (255 mostly): at most MAX_NAME_BYTES of UTF-8, never half a letter
    slug = slug.encode("utf-8")[: MAX_NAME_BYTES - len(".html")].decode("utf-8", "ignore").strip("-._")
    return (slug or "story") + ".html"


def _attachment(filename: str) -> str:
    """``Content-Disposition`` for ``filename``: RFC 6266's ``filename*`` (UTF-8, RFC 5987) with an
    ASCII ``filename`` for clients that read only that one (accents dropped, other letters left out)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name[: -len(".html")]))
    fallback = (stem.strip("-._") or "story") + ".html"
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _image_response(data: bytes, mime: str | None, *, cache: str) -> Response:
    from ..format.images import sniff_mime

    mime = mime or sniff_mime(data[:16])
    if mime not in IMAGE_TYPES:
        raise ApiError(415, "this file is not a PNG, JPEG, GIF or WebP image, so it is not served")
    return Response(content=data, media_type=mime, headers={"cache-control": cache})


# -- the app ----------------------------------------------------------------------------------------


def create_app(
    config: StudioConfig, *, teller: Teller | None = None, datasets: Datasets | None = None
) -> FastAPI:
    """The studio for ``config``; the teller is made now from ``config.teller`` unless one is given.

    ``datasets``: the catalog of ``config.datasets`` when the caller opened it already.
    """
    # module scripts are refused under nosniff unless served as JavaScript, whatever the system's table says
    for kind, suffix in (("text/javascript", ".js"), ("text/javascript", ".mjs"), ("text/css", ".css")):
        mimetypes.add_type(kind, suffix)
    mimetypes.add_type("image/svg+xml", ".svg")
    own_teller = teller is None and config.teller is not None
    if own_teller:
        from ..tell.commands import make_teller

        # someone is waiting for each story: one retry, not the batch runs' three
        teller = make_teller(config.teller, retries=min(config.teller.retries, 1))
    jobs = (
        JobManager(
            teller,
            max_jobs=config.max_jobs,
            ttl=config.job_ttl,
            serial=teller.backend == "transformers",
            grace=config.job_grace,
            job_teller=_job_teller(config, teller) if own_teller else None,
        )
        if teller is not None
        else None
    )
    uploads = UploadStore(
        max_image_bytes=config.max_image_bytes,
        max_total=config.max_upload_bytes,
        max_pixels=config.max_pixels,
    )
    datasets = datasets if datasets is not None else Datasets(config.datasets)
    runs = Runs(config.runs)
    static = Path(config.static_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if jobs is not None:
            await run_in_threadpool(jobs.close)
        if own_teller and teller is not None:
            teller.close()

    app = FastAPI(
        title="storyreasoning studio",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.teller = teller
    app.state.jobs = jobs
    app.state.uploads = uploads
    app.state.datasets = datasets
    app.state.runs = runs

    # -- errors: always {"error": one sentence} ------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StoryReasoningError)
    async def _user_error(request: Request, exc: StoryReasoningError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"nothing at {request.url.path[:200]}; the studio's routes are listed in studio/API.md"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:200]}"
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("studio request %s %s failed", request.method, request.url.path[:200])
        # the exception's own text stays in the log: it may name files and folders of the server
        return JSONResponse(
            {"error": f"the studio failed on this request ({type(exc).__name__}); its log says why"},
            status_code=500,
            # Starlette answers crashes outside every added middleware, so Guard cannot add these.
            headers={**SECURITY_HEADERS, "cache-control": "no-store"},
        )

    # -- the page ------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = static / "index.html"
        if not page.is_file():
            raise ApiError(404, f"the studio's page is missing ({page}); reinstall storyreasoning")
        return FileResponse(
            page, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache"}
        )

    app.mount("/static", StaticFiles(directory=static, check_dir=False), name="static")

    # -- config ----------------------------------------------------------------------------------------
    @app.get("/api/config")
    def get_config() -> dict:
        described = None
        if teller is not None:
            described = {
                "backend": teller.backend,
                "model": teller.model,
                "label": teller_label(teller),
                "baseline": teller.backend == "baseline",
            }
        return {
            "version": __version__,
            "teller": described,
            "limits": {
                "max_images": config.max_images,
                "max_image_bytes": config.max_image_bytes,
                "types": list(IMAGE_TYPES),
                "max_new_tokens": max(inputs.MAX_NEW_TOKENS, config.sampling.max_new_tokens),
                "max_temperature": max(inputs.MAX_TEMPERATURE, config.sampling.temperature),
                "max_prompt_chars": inputs.MAX_PROMPT_CHARS,
            },
            "sampling": config.sampling.to_dict(),
            "prompt": config.prompt,
            "system_prompt": SYSTEM_PROMPT,
            "datasets": datasets.listing(),
            "runs": config.runs is not None,
        }

    # -- uploads ---------------------------------------------------------------------------------------
    @app.post("/api/uploads")
    async def post_uploads(request: Request) -> dict:
        files = await read_files(
            request,
            "files",
            max_files=config.max_images,
            max_file_bytes=config.max_image_bytes,
            max_body=config.max_images * config.max_image_bytes + 64 * 1024,
        )
        if not files:
            raise ApiError(400, "the upload holds no files; send the images as the form field 'files'")
        added = await run_in_threadpool(uploads.add, files)
        return {"images": [u.to_dict() for u in added]}

    @app.get("/api/uploads/{upload_id}")
    def get_upload(upload_id: TokenSegment) -> Response:
        upload = uploads.require(upload_id)
        return _image_response(upload.data, upload.mime, cache="private, max-age=86400, immutable")

    # -- tell --------------------------------------------------------------------------------------------
    @app.post("/api/tell")
    async def post_tell(request: Request) -> dict:
        if jobs is None:
            raise ApiError(
                503,
                "this studio has no storyteller; restart it with --teller baseline, --endpoint URL or --model MODEL",
            )
        body = await inputs.json_body(request, config.max_body_bytes)
        ids = inputs.ids(body, "images", config.max_images, required=True)
        text = inputs.text(body, "prompt", inputs.MAX_PROMPT_CHARS)
        system = inputs.text(body, "system_prompt", inputs.MAX_PROMPT_CHARS)
        order = inputs.text(body, "order", inputs.MAX_NAME_CHARS) or "images-first"
        if order not in ORDERS:
            raise ApiError(400, f"'order' must be one of {', '.join(ORDERS)}")
        sampling = _sampling(body, config.sampling)
        chosen = [uploads.require(i) for i in ids]
        prompt = Prompt(
            text=text if text and text.strip() else config.prompt,
            system=SYSTEM_PROMPT if system is None else (system or None),
            order=order,
        )
        job = jobs.start(
            [u.data for u in chosen],
            [(u.width, u.height) for u in chosen],
            prompt=prompt,
            sampling=sampling,
        )
        return {"job": job.id}

    @app.get("/api/tell/{job_id}/events")
    async def tell_events(job_id: TokenSegment, request: Request) -> StreamingResponse:
        last = inputs.last_event_id(request.headers.get("last-event-id"))
        if jobs is None:
            raise ApiError(404, "this studio has no storyteller, so it has no tell jobs")
        job = jobs.get(job_id)
        start = 0 if last is None else last + 1
        # the job is read while this stream is open (a job nobody reads is cancelled after a grace)
        detach = jobs.attach(job)

        async def stream():
            index = start
            try:
                yield ": storyreasoning studio\n\n"
                while True:
                    events, finished = job.since(index)
                    for offset, event in enumerate(events):
                        data = json.dumps(event, ensure_ascii=False)
                        yield f"id: {index + offset}\ndata: {data}\n\n"
                    index += len(events)
                    if finished and not events:
                        return
                    if jobs.streams_ended:
                        return  # the server is shutting down: the page hears the connection end
                    if not events:
                        await job.wait(index, KEEP_ALIVE_SECONDS)
                        if jobs.streams_ended:
                            return
                        if job.since(index)[0] == [] and not job.finished:
                            yield ": keep-alive\n\n"
            finally:
                detach()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            # also after a client that went away: the generator may be left suspended at a yield
            background=BackgroundTask(detach),
        )

    @app.post("/api/tell/{job_id}/cancel")
    def cancel_tell(job_id: TokenSegment) -> dict:
        if jobs is None:
            raise ApiError(404, "this studio has no storyteller, so it has no tell jobs")
        job = jobs.cancel(job_id)
        final = job.since(0)[0][-1] if job.finished else {}
        return {"cancelled": final.get("event") == "cancelled"}

    # -- inspect and export ------------------------------------------------------------------------------
    @app.post("/api/parse")
    async def post_parse(request: Request) -> dict:
        body = await inputs.json_body(request, config.max_body_bytes)
        text = inputs.text(body, "text", inputs.MAX_TEXT_CHARS, required=True)
        sizes = inputs.sizes(body.get("image_sizes"))

        def parse() -> dict:
            from ..format.stream import parse_output

            telling = parse_output(text)
            data = telling.to_dict(image_sizes=sizes) if sizes else telling.to_dict()
            return {"telling": data, "raw": telling.raw}

        return await run_in_threadpool(parse)

    @app.post("/api/export")
    async def post_export(request: Request) -> Response:
        body = await inputs.json_body(request, config.max_body_bytes)
        text = inputs.text(body, "text", inputs.MAX_TEXT_CHARS)
        ids = inputs.ids(body, "images", config.max_images, required=False)
        dataset = inputs.text(body, "dataset", inputs.MAX_NAME_CHARS)
        story_id = inputs.text(body, "story_id", inputs.MAX_ID_CHARS)
        split = inputs.text(body, "split", inputs.MAX_NAME_CHARS) or None
        title = (inputs.text(body, "title", inputs.MAX_LABEL_CHARS) or "").strip() or "Grounded story"
        label = inputs.text(body, "teller_label", inputs.MAX_LABEL_CHARS)
        if ids and dataset:
            raise ApiError(400, "give either 'images' (uploads) or 'dataset' and 'story_id', not both")
        if bool(dataset) != bool(story_id):
            raise ApiError(400, "'dataset' and 'story_id' go together; give both or neither")

        def render() -> str:
            from ..format.stream import parse_output
            from ..tell.html import render_html

            images: list = []
            output = text
            if ids:
                images = [uploads.require(i).data for i in ids]
            elif dataset:
                sample = datasets.sample(dataset, story_id, split)
                images = list(sample.frames)
                if not output:
                    output = sample.output_text()
            if not output or not output.strip():
                raise ApiError(400, "there is no output to export; generate or paste one first")
            return render_html(parse_output(output), images, title=title, teller_label=label)

        page = await run_in_threadpool(render)
        return Response(
            content=page,
            media_type="text/html; charset=utf-8",
            headers={"content-disposition": _attachment(_filename(title))},
        )

    # -- datasets ------------------------------------------------------------------------------------------
    @app.get("/api/datasets")
    def list_datasets() -> dict:
        out = []
        for entry in datasets.listing():
            try:
                entry["splits"] = datasets.splits(entry["name"])
            except ApiError as exc:
                entry["splits"] = []
                entry["error"] = str(exc)
            out.append(entry)
        return {"datasets": out}

    @app.get("/api/datasets/{name}/stories")
    def dataset_stories(
        name: NameSegment, split: Split = "", offset: Offset = 0, limit: Limit = 50, q: Search = ""
    ) -> dict:
        stories = datasets.load(name, split or None)
        indices = list(range(len(stories)))
        if q.strip():
            needle = q.strip().lower()
            ids = stories.ids()
            indices = [i for i in indices if needle in ids[i].lower()]
        page = []
        for i in indices[offset : offset + limit]:
            sample = stories[i]
            page.append({"story_id": sample.story_id, "frames": sample.frame_count})
        return {"total": len(indices), "stories": page}

    @app.get("/api/datasets/{name}/stories/{story_id:path}/frames/{k}")
    def dataset_frame(
        name: NameSegment, story_id: StorySegment, k: FrameIndex, split: Split = ""
    ) -> Response:
        return frame_of(name, story_id, k, split)

    # A story and its frames with the id in the query, for the ids a URL's path cannot carry
    # (`.` and `..`: catalog.FOLDED; any id is answered this way too). Runs: run_story_by_query.
    @app.get("/api/datasets/{name}/story/frames/{k}")
    def dataset_frame_by_query(
        name: NameSegment, k: FrameIndex, story_id: StoryQuery, split: Split = ""
    ) -> Response:
        return frame_of(name, story_id, k, split)

    @app.get("/api/datasets/{name}/story")
    def dataset_story_by_query(name: NameSegment, story_id: StoryQuery, split: Split = "") -> dict:
        return dataset_story(name, story_id, split)

    def frame_of(name: str, story_id: str, k: int, split: str) -> Response:
        sample = datasets.sample(name, story_id, split or None)
        if not 0 <= k < len(sample.frames):
            raise ApiError(404, f"story {story_id[:80]!r} has {len(sample.frames)} frames; k is 0-based")
        try:
            data = sample.frames[k].bytes()
        except StoryReasoningError as exc:
            raise ApiError(404, f"frame {k} of story {story_id[:80]!r} cannot be read ({exc})") from None
        return _image_response(data, None, cache="private, max-age=3600")

    @app.get("/api/datasets/{name}/stories/{story_id:path}")
    def dataset_story(name: NameSegment, story_id: StorySegment, split: Split = "") -> dict:
        from ..format.stream import parse_output

        sample = datasets.sample(name, story_id, split or None)
        frames = datasets.frames(name, sample.story_id, split or None, sample)
        telling = parse_output(sample.output_text())
        return {
            "story_id": sample.story_id,
            "frames": frames,
            "telling": _to_dict(telling, frames),
            "raw": telling.raw,
        }

    # -- runs ---------------------------------------------------------------------------------------------
    @app.get("/api/runs")
    def list_runs() -> dict:
        out = []
        for name in runs.listing():
            try:
                out.append(runs.get(name).summary())
            except ApiError as exc:
                out.append(
                    {
                        "name": name,
                        "manifest": {},
                        "stories": 0,
                        "failed": 0,
                        "metrics": None,
                        "error": str(exc),
                    }
                )
        return {"runs": out}

    @app.get("/api/runs/{name}/stories")
    def run_stories(name: NameSegment, offset: Offset = 0, limit: Limit = 50, q: Search = "") -> dict:
        stories = runs.get(name).story_rows()
        if q.strip():
            needle = q.strip().lower()
            stories = [s for s in stories if needle in s["story_id"].lower()]
        return {
            "total": len(stories),
            "failed": sum(s["failed"] for s in stories),
            "stories": stories[offset : offset + limit],
        }

    @app.get("/api/runs/{name}/stories/{story_id:path}")
    def run_story(name: NameSegment, story_id: StorySegment) -> dict:
        from ..format.stream import parse_output

        run = runs.get(name)
        record = run.records.get(story_id)
        if record is None:
            if story_id in run.failed:
                raise ApiError(404, f"story {story_id[:80]!r} failed in run {name}: {run.failed[story_id]}")
            raise ApiError(404, f"no story {story_id[:80]!r} in run {name}; list its stories first")
        raw = record.get("raw") if isinstance(record.get("raw"), str) else ""
        frames = reference = None
        # the manifest names the dataset the run was told from: it is matched against the
        # configured datasets by name only, never opened as a path
        dataset, split = datasets.find_recorded(run.manifest)
        if dataset is not None:
            try:
                frames = datasets.frames(dataset, story_id, split)
                reference = {"dataset": dataset, "split": split, "story_id": story_id}
            except ApiError:
                frames = None
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        telling = parse_output(raw)
        return {
            "story_id": story_id,
            "raw": raw,
            "telling": _to_dict(telling, frames, meta.get("images")),
            "meta": meta,
            "metrics": run.per_story.get(story_id) if run.per_story is not None else None,
            "frames": frames,
            "reference": reference,
        }

    @app.get("/api/runs/{name}/story")
    def run_story_by_query(name: NameSegment, story_id: StoryQuery) -> dict:
        """A run's story with its id in the query (for `.` and `..`, which a path cannot carry)."""
        return run_story(name, story_id)

    allowed = None
    if config.loopback:
        allowed = LOOPBACK_NAMES | {config.host.strip("[]").lower()}
    app.add_middleware(Guard, allowed_hosts=allowed)
    return app


def _job_teller(config: StudioConfig, teller: Teller) -> Callable[[], Teller] | None:
    """For a teller the studio made for one server: a maker of the same teller for each job.

    Closing a job's own teller shuts its request's socket, so a cancel ends that request at
    once, however slow or silent the server, and leaves the other jobs' requests alone. The
    model is the one the first teller found, so no job asks the server for it again. Other
    tellers (local weights, the baseline, several endpoints) are shared: None.
    """
    from ..tell.commands import make_teller
    from ..tell.openai import OpenAITeller

    if config.teller is None or not isinstance(teller, OpenAITeller):
        return None
    options = dataclasses.replace(config.teller, served_model=teller.model)
    return lambda: make_teller(options, retries=min(options.retries, 1))


def _sampling(body: dict, default: Sampling) -> Sampling:
    """The request's sampling settings, each within its bound; absent or null ones from ``default``.

    The bounds stretch to the studio's own defaults (``--temperature``, ``--max-new-tokens``)
    when those are higher, so the page can always send back what ``/api/config`` says.
    """
    number = inputs.number
    hottest = max(inputs.MAX_TEMPERATURE, default.temperature)
    longest = max(inputs.MAX_NEW_TOKENS, default.max_new_tokens)
    return Sampling(
        temperature=float(number(body, "temperature", default.temperature, low=0, high=hottest)),
        top_p=float(number(body, "top_p", default.top_p, low=0, high=1, above_low=True)),
        max_new_tokens=int(
            number(body, "max_new_tokens", default.max_new_tokens, low=1, high=longest, integer=True)
        ),
        seed=number(body, "seed", default.seed, low=0, high=inputs.MAX_SEED, integer=True, nullable=True),
    )


def _to_dict(telling, frames: list[dict] | None, n_images: Any = None) -> dict:
    """The telling's JSON, validated against the frames' sizes when they are all known."""
    if frames and all(f["width"] > 0 and f["height"] > 0 for f in frames):
        return telling.to_dict(image_sizes=[(f["width"], f["height"]) for f in frames])
    if frames:
        return telling.to_dict(n_images=len(frames))
    if isinstance(n_images, int) and not isinstance(n_images, bool) and n_images > 0:
        return telling.to_dict(n_images=n_images)
    return telling.to_dict()
