"""What ``storyreasoning tell``, ``tell-dataset`` and ``serve`` do (the CLI only parses options)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from ..errors import Interrupted, UsageError
from ..files import write_json_atomic, write_text_atomic
from .base import BASELINE_LABEL, Teller, TellError, teller_label
from .settings import EndpointOptions, ServeSettings, TellDatasetSettings, TellerOptions, TellSettings


def endpoint_teller(
    options: EndpointOptions, *, concurrency: int = 1, retries: int | None = None,
    min_pixels: int | None = None, max_pixels: int | None = None, endpoint: str | None = None,
) -> Teller:  # fmt: skip
    """The OpenAI-compatible teller the endpoint group names (every job that talks to a server builds it
    here); ``endpoint`` replaces the group's URL (one of tell-dataset's several)."""
    from .openai import OpenAITeller

    return OpenAITeller(
        options.endpoint if endpoint is None else endpoint,
        model=options.served_model,
        api_key=options.api_key,
        timeout=options.timeout,
        deadline=options.deadline,
        concurrency=concurrency,
        retries=options.retries if retries is None else retries,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )


def make_teller(
    options: TellerOptions, *, concurrency: int = 1, batch_size: int = 1, retries: int | None = None
) -> Teller:
    """The teller the options name: ``--teller baseline``, ``--endpoint URL`` (several: a
    :class:`~storyreasoning.tell.fleet.FleetTeller`) or ``--model`` (the default)."""
    from .fleet import split_endpoints

    endpoints = split_endpoints(options.endpoint)  # tell-dataset's is repeatable
    if options.endpoint and not endpoints:  # --endpoint ",": no server, and no reason to load the 7B model
        raise UsageError(
            "--endpoint names no URL; give the base URL of an OpenAI-compatible server (http://localhost:8000/v1), "
            "or leave it out"
        )
    given = [
        name
        for name, value in (
            ("--model", options.model),
            ("--endpoint", endpoints),
            ("--teller", options.teller),
        )
        if value
    ]
    if len(given) > 1:
        raise UsageError(f"give one of --model, --endpoint and --teller, not {' and '.join(given)}")
    if options.teller is not None:
        if options.teller != "baseline":
            raise UsageError(
                f"unknown --teller {options.teller!r}; the built-in teller is 'baseline' "
                "(use --model for local weights, --endpoint for a server)"
            )
        from .baseline import BaselineTeller

        return BaselineTeller()
    if len(endpoints) > 1:
        from .fleet import FleetTeller

        return FleetTeller.connect(
            endpoints, model=options.served_model, api_key=options.api_key, timeout=options.timeout,
            deadline=options.deadline, concurrency=concurrency,
            retries=options.retries if retries is None else retries,
            min_pixels=options.min_pixels, max_pixels=options.max_pixels,
        )  # fmt: skip
    if endpoints:
        return endpoint_teller(
            options, concurrency=concurrency, retries=retries,
            min_pixels=options.min_pixels, max_pixels=options.max_pixels, endpoint=endpoints[0],
        )  # fmt: skip
    from ..models import check_device, check_model_source
    from .local import DEFAULT_MODEL, OTHER_TELLERS, TransformersTeller

    check_device(options.device)  # --device foo, or cuda without a GPU: said before the model is fetched
    if not options.model:  # said before anything loads: the default is a large download
        from rich.console import Console

        Console(stderr=True, highlight=False).print(
            f"no storyteller given: loading {DEFAULT_MODEL} (the published 7B model: about 16 GB from the "
            "Hugging Face Hub on first use, a GPU advised); --teller baseline needs no weights, "
            "--endpoint URL uses a server, --model FOLDER your own weights",
            markup=False,
            soft_wrap=True,
        )
    check_model_source(
        options.model or DEFAULT_MODEL, revision=options.revision, hint=OTHER_TELLERS, example=DEFAULT_MODEL
    )
    return TransformersTeller(
        options.model or DEFAULT_MODEL,
        revision=options.revision,
        dtype=options.dtype,
        device=options.device,
        min_pixels=options.min_pixels,
        max_pixels=options.max_pixels,
        batch_size=batch_size,
        attn_implementation=options.attn_implementation,
        cache=options.cache,
        compile=options.compile,
    )


Told = TypeVar("Told", TellSettings, TellDatasetSettings)


def prompt_layout(settings: Told, say: Callable[[str], None]) -> Told:
    """``settings`` with the order of images and prompt filled in: ``--order`` (or the config file's) when
    given, else the order the ``--model`` folder's training recorded (said through ``say``: a model trained
    text-first never saw images-first), else images-first (a hub id, a server, the baseline)."""
    if settings.order is not None:
        return settings
    trained = None
    if settings.model and not (settings.endpoint or settings.teller):  # local weights: their folder's record
        from .local import trained_order

        trained = trained_order(settings.model)
    if trained is not None:
        say(f"order {trained}, as {settings.model} was trained")
    return replace(settings, order=trained or "images-first")


def collect_images(paths: list[Path]) -> list[Path]:
    """Image files from the arguments; a folder stands for its numbered frames (the story-folder rule)."""
    from ..data.folder import numbered_frames

    images: list[Path] = []
    for path in paths:
        if path.is_dir():
            images += numbered_frames(path, or_files=True)  # none: says why (unnumbered names) and how
        elif not path.exists():
            raise UsageError(f"image {path} does not exist; check the path")
        else:
            images.append(path)
    if not images:
        raise UsageError("give at least one image (or a folder of numbered frames)")
    return images


def side_files(out: Path) -> tuple[Path, Path]:
    """Where the parsed JSON and the HTML view of ``--out FILE`` go (beside it)."""
    if out.suffix.lower() in (".json", ".html"):
        return out.with_name(out.name + ".json"), out.with_name(out.name + ".html")
    return out.with_suffix(".json"), out.with_suffix(".html")


def keep_partial(partial: str, *, out: Path | None, live: bool, as_json: bool, error: str) -> str:
    """Put a story's partial output where the user finds it; say where (for the one-line error).

    With ``--out`` it is written there. Otherwise it goes to standard output: it is already
    there when it was streamed live, else it is written now (as ``{"raw", "partial": true,
    "error"}`` with ``--json``, so the output stays JSON).
    """
    if not partial:
        return "no output came before it"
    size = f"{len(partial)} characters"
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, partial)
        except OSError as exc:  # checked writable before the story; something changed since
            sys.stdout.write(partial + "\n")
            return f"the partial output ({size}) could not be written to {out} ({exc.strerror}): it is on standard output"
        return f"the partial output ({size}) is in {out}"
    if live:
        sys.stdout.write("\n")
        return f"the partial output ({size}) is above"
    if as_json:
        sys.stdout.write(
            json.dumps({"raw": partial, "partial": True, "error": error}, ensure_ascii=False) + "\n"
        )
        return f'the partial output ({size}) is on standard output, as JSON with "partial": true'
    sys.stdout.write(partial + ("" if partial.endswith("\n") else "\n"))
    return f"the partial output ({size}) is on standard output"


def tell(settings: TellSettings) -> int:
    from rich.console import Console

    from ..format.images import image_size
    from ..format.stream import StreamParser
    from .run import check_output_file

    sampling, out, as_json = settings.as_sampling(), settings.out, settings.as_json
    images = collect_images(list(settings.images))
    sizes = [image_size(p) for p in images]  # unreadable files fail here, before any model loads
    if out is not None:  # an output that cannot be written fails now, not after the story
        check_output_file(out, also=side_files(out))
        frames = {image.resolve() for image in images}
        for path in (out, *side_files(out)):
            if path.resolve() in frames:
                raise UsageError(
                    f"--out {out} would write over the image {path}, one of the frames told; "
                    f"give another file, e.g. --out {out.with_name('story.txt')}"
                )
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    settings = prompt_layout(
        settings, lambda line: err.print(line, style="dim", markup=False, soft_wrap=True)
    )
    prompt = settings.as_prompt()
    teller = make_teller(settings)
    label = teller_label(teller)
    err.print(f"[dim]telling a story of {len(images)} images with the {label}[/dim]")
    live = console.is_terminal and not as_json
    parser = StreamParser()
    chunks: list[str] = []
    try:
        import time

        start, first = time.perf_counter(), None
        for chunk in teller.stream(images, prompt=prompt, sampling=sampling):
            if first is None and chunk:
                first = time.perf_counter() - start
            chunks.append(chunk)
            parser.feed(chunk)
            if live:
                console.out(chunk, end="", highlight=False)
        seconds = time.perf_counter() - start
    except TellError as exc:
        partial = "".join(chunks) or exc.partial
        if not partial:
            raise
        where = keep_partial(partial, out=out, live=live, as_json=as_json, error=str(exc))
        raise TellError(f"{exc} ({where})", partial, at_endpoint=exc.at_endpoint) from exc
    except KeyboardInterrupt:
        where = keep_partial("".join(chunks), out=out, live=live, as_json=as_json, error="interrupted")
        raise Interrupted(f"interrupted; {where}") from None
    finally:
        teller.close()
    parser.close()
    telling = parser.result()
    usage = teller.last_usage.to_dict() if teller.last_usage else {}
    usage["seconds"] = seconds
    if usage.get("first_token_seconds") is None:  # a server's stream is timed here, as Teller.tell times it
        usage["first_token_seconds"] = first
    telling.meta = {
        **teller.describe(),
        "sampling": sampling.to_dict(),
        "usage": usage,
        "images": len(images),
    }
    verdict = telling.validate(n_images=len(images), image_sizes=sizes)
    if live:
        console.print()
        console.rule()
    if out is not None:
        from .html import write_html

        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, telling.raw)
        json_path, html_path = side_files(out)
        data = telling.to_dict(verdict)
        data["meta"] = telling.meta
        data["images"] = [str(p) for p in images]
        write_json_atomic(json_path, data)
        write_html(
            html_path,
            telling,
            images,
            title=f"Grounded story ({len(images)} images)",
            teller_label=BASELINE_LABEL if teller.backend == "baseline" else label,
        )
    if as_json:  # the raw output too: a parse leaves out what it could not place (as a partial one has it)
        data = {"raw": telling.raw, **telling.to_dict(verdict)}
        data["meta"] = telling.meta
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    else:
        from ..terminal import print_telling

        print_telling(console, telling, title=label, verdict=verdict)
        if out is not None:
            json_path, html_path = side_files(out)
            console.print(f"wrote {out}, {json_path} and {html_path}")
    return 0


def tell_dataset(settings: TellDatasetSettings) -> int:
    from ..files import lock_folder
    from ..settings import check_record
    from .run import check_run_folder

    check_run_folder(settings.out)  # a file, or a folder that cannot be written: said before any work
    # another job's folder (a training's settings.json): said before the model loads
    check_record(type(settings), settings.out / "settings.json")
    # held from here (the run holds it again, shared): a second run into it is refused before weights load
    with lock_folder(settings.out, refuse=UsageError):
        return _tell_dataset(settings)


def _tell_dataset(settings: TellDatasetSettings) -> int:
    from rich.console import Console

    from ..data.sources import load_stories
    from ..settings import write_record
    from ..terminal import progress_bar
    from .run import RECORDS, EndpointDown, iter_lines
    from .run import tell_dataset as run

    out, limit = settings.out, settings.limit
    # a wrong --temperature, --top-p or --max-new-tokens: said before weights load or a server is asked
    sampling = settings.as_sampling()
    if settings.samples > 1 and not (settings.endpoint or settings.teller):  # local weights: before they load
        from .local import check_samples

        check_samples(settings.samples, sampling)
    stories = load_stories(settings.source, settings.split)
    err = Console(stderr=True, highlight=False)
    # the order used is the one settings.json and the manifest record (a resumed run is held to it)
    settings = prompt_layout(settings, lambda line: err.print(line, markup=False, soft_wrap=True))
    prompt = settings.as_prompt()
    try:
        teller = make_teller(settings, concurrency=settings.concurrency, batch_size=settings.batch_size)
    except TellError as exc:  # the server was asked for its model and could not answer
        if not exc.at_endpoint:
            raise
        raise EndpointDown(
            f"{exc}; nothing was told, run the same command again once the server is up"
        ) from None
    console = Console(highlight=False)
    if hasattr(teller, "warn"):  # a server's notices (it ignores n, an endpoint out or back) on stderr
        teller.warn = lambda line: err.print(line, markup=False)
    total = min(len(stories), limit) if limit else len(stories)
    try:
        with progress_bar(total, f"telling ({teller.backend})") as advance:
            summary = run(
                stories,
                teller,
                out,
                prompt=prompt,
                sampling=sampling,
                limit=limit,
                progress=advance,
                # the run folder accepted these settings (or resumes a run made with them): record them
                on_start=lambda n, skipped: (write_record(settings, out / "settings.json"), advance(skipped)),
                say=lambda line: err.print(line, markup=False),
                samples=settings.samples,
            )
    except KeyboardInterrupt:
        told = len({item["story_id"] for _, item, _ in iter_lines(out / RECORDS)})  # one line at a time
        kept = {0: "no story told is", 1: "the story told is"}.get(told, f"the {told} stories told are")
        raise Interrupted(
            f"interrupted; {kept} kept in {out}, run the same command again to continue"
        ) from None
    finally:
        teller.close()
    console.print(f"{out}: {summary.line()}")
    if summary.failed:
        console.print(
            f"[yellow]failures are in {out / 'errors.jsonl'}; run the same command again to retry them[/yellow]"
        )
    return 0 if not summary.failed else 1


def serve(settings: ServeSettings) -> int:
    from dataclasses import asdict

    from rich.console import Console

    from .serve import check_port, executable, plan

    kwargs = asdict(settings)
    model, print_only = kwargs.pop("model"), kwargs.pop("print_only")
    p = plan(model, **kwargs)
    console = Console(stderr=True, highlight=False)
    if print_only:
        sys.stdout.write(p.shell() + "\n")
        for note in p.notes:
            console.print(f"[dim]{note}[/dim]")
        console.print(f"endpoint: {p.endpoint}")
        return 0
    check_port(settings.host, settings.port)
    # a folder that is not there, or a hub id neither cached nor reachable: one line, not the server's traceback
    from ..models import check_model_source

    check_model_source(model, hint="pass a local model folder, or serve on a machine that reaches the hub")
    for note in p.notes:
        console.print(f"[dim]{note}[/dim]")
    console.print(f"serving {model} with {p.server}; when it is up, use: --endpoint {p.endpoint}")
    console.print(f"[dim]{p.shell()}[/dim]")
    found = executable(p.command[0])
    if found is None:
        fix = (
            "pip install vllm (on a GPU machine)"
            if p.server == "vllm"
            else 'pip install "storyreasoning[serve]"'
        )
        raise UsageError(
            f"{p.command[0]} is not installed here (not on PATH, nor beside {sys.executable}); {fix}"
        )
    return subprocess.call([found, *p.command[1:]])
