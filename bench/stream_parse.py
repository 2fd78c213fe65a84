"""Streaming parse vs. naive re-parse: cost per chunk as a model's output grows.

A storyteller's output arrives a token at a time. The original web UI re-parsed the
whole text received so far at every chunk, so each chunk cost more than the one before
and a whole output cost O(n²). :class:`storyreasoning.format.StreamParser` scans each
chunk once, so its cost per chunk should stay flat from a 1k-token output to a
32k-token one.

For each size this script builds a deterministic synthetic output in the published
layout (``examples/outputs/lighthouse.txt``: image sections with Characters, Objects
and Setting tables, a Narrative Structure, then a grounded story), cuts it into
token-sized chunks (4 characters, as a streaming server would send them) and measures:

* stream: every chunk fed to one ``StreamParser``, then ``result()``; best of
  ``--repeats`` runs, divided by the number of chunks;
* naive: ``parse_output(text[:end])`` at the end of each chunk. Timing that at every
  chunk is quadratic (hours at 32k tokens), so it is timed at ``--samples`` evenly
  spaced chunks (the midpoints of equal bins, best of ``--repeats`` each) and the mean
  per-chunk cost is estimated as the mean of those samples (midpoint rule: exact for a
  cost linear in the prefix length).

Run::

    python bench/stream_parse.py                 # 1k … 32k tokens
    python bench/stream_parse.py --quick         # 1k … 4k tokens, a smoke run
    python bench/stream_parse.py --out bench/results/stream_parse.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from storyreasoning.format import (
    Character,
    CoT,
    GroundedStory,
    ImageAnalysis,
    NarrativePhase,
    NarrativeRow,
    SceneObject,
    Segment,
    Setting,
    SettingElement,
    Span,
    StreamParser,
    parse_output,
    render_output,
)
from storyreasoning.format.box import Box

CHARS_PER_TOKEN = 4
CHUNK_SIZE = 4  # characters per chunk: one token, as a streaming server sends them
SIZES = (1_000, 2_000, 4_000, 8_000, 16_000, 32_000)  # tokens
QUICK_SIZES = (1_000, 2_000, 4_000)
DEFAULT_OUT = Path(__file__).parent / "results" / "stream_parse.json"
NAIVE_METHOD = (
    "naive µs/chunk is estimated: parse_output(text[:end]) is timed at {samples} evenly spaced chunk "
    "positions (midpoints of equal bins, best of {repeats}) and the mean of those samples is taken as the "
    "mean per-chunk cost; naive total = that mean x chunks"
)

# -- a synthetic storyteller output -------------------------------------------------------------

_FIRST = ["Ines", "Tomas", "Mara", "Joao", "Lena", "Pavel", "Rosa", "Idris", "Noor", "Elias", "Sofia", "Bram"]
_LOOKS = [
    "Young woman in a yellow raincoat",
    "Old keeper with a grey beard and a wool cap",
    "Tall fisherman in oilskins",
    "Small boy with a red scarf",
    "Woman in a long dark coat",
    "Sailor with a bandaged hand",
    "Girl carrying a wicker basket",
    "Man in a patched wool jumper",
]
_EMOTIONS = [
    "Determined",
    "Anxious",
    "Surprised",
    "Resolute",
    "Hopeful",
    "Calm",
    "Afraid",
    "Relieved",
    "Tired",
]
_ACTIONS = [  # (Actions cell, story verb)
    ("Climbing the cliff path", "climbed"),
    ("Knocking on the door", "knocked"),
    ("Opening the door", "pulled open"),
    ("Turning the lamp crank", "turned"),
    ("Lighting the wick", "lit"),
    ("Pointing out to sea", "pointed"),
    ("Hauling on a rope", "hauled"),
    ("Reading a logbook", "read"),
]
_ROLES = ["Protagonist", "Mentor", "Helper", "Witness", "Antagonist", "Comic relief"]
# Objects, landmarks and backgrounds, in the order they join the story: (kind, description, function, story phrase)
_THINGS = [
    ("obj", "Brass storm lantern", "Light source", "her brass lantern"),
    ("lm", "White lighthouse on the headland", "Landmark", "toward the lighthouse"),
    ("obj", "Heavy wooden door", "Entrance", "the heavy door"),
    ("obj", "Coil of wet rope", "Tool", "the wet rope"),
    ("bg", "Dark sea seen through the window", "Backdrop", "across the dark sea"),
    ("obj", "Leather logbook", "Record", "the logbook"),
    ("lm", "Stone harbour wall", "Landmark", "along the harbour wall"),
    ("obj", "Great lamp of the lighthouse", "Beacon", "the great lamp"),
    ("bg", "Storm clouds over the bay", "Backdrop", "under the storm clouds"),
    ("obj", "Spyglass on a tripod", "Lookout", "the spyglass"),
]
_PHRASE = {desc: phrase for _, desc, _, phrase in _THINGS}
_SETTING_TEXT = {
    SettingElement.LOCATION: "Rocky cliff path above the sea",
    SettingElement.ENVIRONMENT: "Wind-battered coast",
    SettingElement.LIGHTING: "Golden beam sweeping the water",
    SettingElement.WEATHER: "Rising wind and rain",
    SettingElement.TIME_PERIOD: "Early twentieth century",
    SettingElement.ARCHITECTURE: "Whitewashed stone tower",
    SettingElement.INTERIOR_DESIGN: "Lamp room with brass gears",
    SettingElement.ATMOSPHERE: "Tense and expectant",
    SettingElement.BACKGROUND: "Grey sea meeting a grey sky",
}
_MOODS = ["Tense", "Ominous", "Warm", "Urgent", "Hopeful", "Quiet", "Bleak"]
_TIMES = ["Dusk", "Night", "Dawn", "Midnight", "Morning"]
_FUNCTIONS = [
    "Establishes isolation",
    "Foreshadows the storm",
    "Meeting point",
    "Place of resolution",
    "Raises the stakes",
]


def _box(rng: random.Random, width: int = 640, height: int = 480) -> Box:
    x1, y1 = rng.randrange(0, width - 60), rng.randrange(0, height - 60)
    return Box(x1, y1, rng.randrange(x1 + 20, width), rng.randrange(y1 + 20, height))


def _image(
    rng: random.Random, number: int, cast: list[Character], things: list[SceneObject]
) -> ImageAnalysis:
    """One image section: 1-3 characters, 1-3 objects/landmarks, 1-3 setting rows.

    Characters and objects recur across images (the same id, a new box), as they do
    in the dataset; a new one joins now and then.
    """
    image = ImageAnalysis(number=number)
    if len(cast) < len(_FIRST) and (not cast or rng.random() < 0.3):
        i = len(cast)
        cast.append(
            Character(f"char{i + 1}", _FIRST[i], rng.choice(_LOOKS), narrative_function=rng.choice(_ROLES))
        )
    if len(things) < len(_THINGS) and (not things or rng.random() < 0.4):
        kind, description, function, _ = _THINGS[len(things)]
        n = 1 + sum(1 for t in things if t.kind == kind)
        things.append(SceneObject(f"{kind}{n}", description, function))
    for person in rng.sample(cast, min(len(cast), rng.randint(1, 3))):
        where = rng.choice(["at the door", "on the path", "by the lamp", "in the rain"])
        action, _ = rng.choice(_ACTIONS)
        image.characters.append(
            Character(
                person.id,
                person.name,
                f"{person.description} {where}",
                rng.choice(_EMOTIONS),
                action,
                person.narrative_function,
                _box(rng),
            )
        )
    for thing in rng.sample(things, min(len(things), rng.randint(1, 3))):
        holder = rng.choice(image.characters).name
        image.objects.append(
            SceneObject(
                thing.id,
                thing.description,
                thing.function,
                f"Seen by {holder}",
                rng.choice(_FUNCTIONS),
                _box(rng),
            )
        )
    for element in rng.sample(list(SettingElement), rng.randint(1, 3)):
        image.settings.append(
            Setting(
                element.value,
                _SETTING_TEXT[element],
                rng.choice(_MOODS),
                rng.choice(_TIMES),
                rng.choice(_FUNCTIONS),
            )
        )
    return image


def _segment(rng: random.Random, image: ImageAnalysis) -> Segment:
    """The story text for one image: 2-4 sentences whose spans name only that image's ids."""
    parts: list[str | Span] = []
    objects = [o for o in image.objects if o.kind == "obj"]
    places = [o for o in image.objects if o.kind != "obj"]
    for _ in range(rng.randint(2, 4)):
        person = rng.choice(image.characters)
        _, verb = rng.choice(_ACTIONS)
        parts += [Span("gdo", (person.id,), person.name), " ", Span("gda", (person.id,), verb)]
        if places and rng.random() < 0.6:
            place = rng.choice(places)
            parts += [" ", Span("gdl", (place.id,), _PHRASE[place.description])]
        if objects and rng.random() < 0.7:
            thing = rng.choice(objects)
            parts += [" with ", Span("gdo", (thing.id,), _PHRASE[thing.description])]
        parts.append(rng.choice([". ", ", and the wind rose. ", " while the rain kept falling. "]))
    if len(image.characters) > 1:
        ids = tuple(c.id for c in image.characters)
        parts += [Span("gdo", ids, "They"), " ", Span("gda", ids, "waited"), " for the light."]
    else:
        parts.append(f"{image.characters[0].name} waited for the light.")
    return Segment(image=image.number, parts=parts)


def _narrative(rng: random.Random, n_images: int) -> list[NarrativeRow]:
    """The five phases, each covering a contiguous run of images."""
    phases = list(NarrativePhase)
    bounds = [round(i * n_images / len(phases)) for i in range(len(phases) + 1)]
    rows = []
    for i, phase in enumerate(phases):
        lo, hi = bounds[i] + 1, max(bounds[i + 1], bounds[i] + 1)
        images = ", ".join(str(k) for k in range(lo, min(hi, n_images) + 1)) or str(n_images)
        rows.append(
            NarrativeRow(phase.value, f"The keeper's story, part {i + 1}", rng.choice(_FUNCTIONS), images)
        )
    return rows


def make_output(tokens: int, seed: int = 0) -> str:
    """A synthetic model output of about ``tokens`` tokens (1 token ≈ 4 characters).

    Deterministic for a given ``(tokens, seed)``. Built from the dataclasses and the
    package's own renderers, so it is exactly the published layout; it parses with no
    diagnostics and validates as well structured.
    """
    rng = random.Random(f"stream-parse-bench:{seed}:{tokens}")
    target = tokens * CHARS_PER_TOKEN
    cast: list[Character] = []
    things: list[SceneObject] = []
    images: list[ImageAnalysis] = []
    segments: list[Segment] = []

    def render() -> str:
        cot = CoT(images=images, narrative=_narrative(random.Random(seed), len(images)))
        return render_output(cot, GroundedStory(segments=segments)) + "\n"

    text = ""
    while True:
        image = _image(rng, len(images) + 1, cast, things)
        images.append(image)
        segments.append(_segment(rng, image))
        longer = render()
        if len(longer) >= target:
            # keep whichever of the two is closer to the target (at least one image)
            if text and target - len(text) < len(longer) - target:
                images.pop()
                segments.pop()
                return text
            return longer
        text = longer


# -- measurement --------------------------------------------------------------------------------


def chunk(text: str, size: int = CHUNK_SIZE) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes, with the cyclic GC kept out of the measurement."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def _stream(chunks: Sequence[str]) -> None:
    parser = StreamParser()
    for piece in chunks:
        parser.feed(piece)
    parser.result()


def _stream_per_chunk(chunks: Sequence[str]) -> list[float]:
    """Seconds for each ``feed`` (the last one includes ``result()``): one instrumented run."""
    clock = time.perf_counter
    times = []
    gc.collect()
    gc.disable()
    try:
        parser = StreamParser()
        for piece in chunks:
            start = clock()
            parser.feed(piece)
            times.append(clock() - start)
        start = clock()
        parser.result()
        times[-1] += clock() - start
    finally:
        gc.enable()
    return times


def sample_positions(n_chunks: int, samples: int) -> list[int]:
    """``samples`` chunk indices at the midpoints of equal bins over ``range(n_chunks)``."""
    samples = max(1, min(samples, n_chunks))
    return sorted({min(n_chunks - 1, int((i + 0.5) * n_chunks / samples)) for i in range(samples)})


def measure(
    tokens: int,
    *,
    chunk_size: int = CHUNK_SIZE,
    repeats: int = 3,
    samples: int = 20,
    seed: int = 0,
) -> dict:
    """One row of the benchmark: stream and naive cost per chunk for an output of ``tokens`` tokens."""
    text = make_output(tokens, seed)
    chunks = chunk(text, chunk_size)
    n = len(chunks)

    # sanity: the synthetic output is well formed and the streamed parse is the batch parse
    whole = parse_output(text)
    if whole.diagnostics or whole.cot is None or whole.story is None:
        raise RuntimeError(
            f"the synthetic {tokens}-token output does not parse cleanly: {whole.diagnostics[:3]}"
        )
    parser = StreamParser()
    for piece in chunks:
        parser.feed(piece)
    streamed = parser.result()
    if (streamed.cot, streamed.story, streamed.diagnostics) != (whole.cot, whole.story, whole.diagnostics):
        raise RuntimeError("streamed and batch parses differ")

    _stream(chunks)  # warm-up: first-call costs (caches, lazy imports) are not per-chunk costs
    stream_total = min(_timed(lambda: _stream(chunks)) for _ in range(repeats))
    per_chunk = _stream_per_chunk(chunks)
    decile = max(1, n // 10)

    naive = []
    for k in sample_positions(n, samples):
        end = min(len(text), (k + 1) * chunk_size)
        prefix = text[:end]
        best = min(_timed(lambda p=prefix: parse_output(p)) for _ in range(repeats))
        naive.append({"chunk": k, "chars": end, "us": best * 1e6})
    naive_mean_us = statistics.fmean(s["us"] for s in naive)
    stream_us = stream_total / n * 1e6

    return {
        "target_tokens": tokens,
        "tokens": round(len(text) / CHARS_PER_TOKEN),
        "chars": len(text),
        "chunks": n,
        "images": len(whole.cot.images),
        "stream_total_s": stream_total,
        "stream_us_per_chunk": stream_us,
        "stream_first_decile_us_per_chunk": statistics.fmean(per_chunk[:decile]) * 1e6,
        "stream_last_decile_us_per_chunk": statistics.fmean(per_chunk[-decile:]) * 1e6,
        "naive_us_per_chunk_est": naive_mean_us,
        "naive_total_s_est": naive_mean_us * n / 1e6,
        "naive_samples": naive,
        "ratio": naive_mean_us / stream_us,
    }


def metadata(*, chunk_size: int, repeats: int, samples: int, seed: int, argv: Sequence[str]) -> dict:
    from storyreasoning import __version__ as version

    return {
        "benchmark": "stream_parse",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "storyreasoning": version,
        "chunk_size": chunk_size,
        "chars_per_token": CHARS_PER_TOKEN,
        "repeats": repeats,
        "naive_samples": samples,
        "seed": seed,
        "timer": "time.perf_counter, best of repeats, cyclic GC disabled while timing",
        "naive_method": NAIVE_METHOD.format(samples=samples, repeats=repeats),
        "command": " ".join(["python", "bench/stream_parse.py", *argv]),
    }


def run(
    sizes: Sequence[int],
    *,
    chunk_size: int = CHUNK_SIZE,
    repeats: int = 3,
    samples: int = 20,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    rows = []
    for tokens in sizes:
        row = measure(tokens, chunk_size=chunk_size, repeats=repeats, samples=samples, seed=seed)
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


def write_json(path: Path, rows: list[dict], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": meta, "rows": rows}, indent=2, ensure_ascii=False) + "\n")


def table(rows: list[dict]):
    from rich.table import Table

    out = Table(title=f"StreamParser vs. naive re-parse, {CHUNK_SIZE}-character chunks")
    for name in ("tokens", "chars", "chunks", "stream µs/chunk", "naive µs/chunk (estimated)", "ratio"):
        out.add_column(name, justify="right")
    for row in rows:
        out.add_row(
            f"{row['tokens']:,}",
            f"{row['chars']:,}",
            f"{row['chunks']:,}",
            f"{row['stream_us_per_chunk']:.2f}",
            f"{row['naive_us_per_chunk_est']:,.0f}",
            f"{row['ratio']:,.0f}x",
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON results (default bench/results/stream_parse.json)"
    )
    ap.add_argument("--quick", action="store_true", help="only 1k, 2k and 4k tokens: a fast smoke run")
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated output sizes in tokens (overrides --quick)",
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="timings per measurement; the best is kept (default 3)"
    )
    ap.add_argument(
        "--samples", type=int, default=20, help="prefixes timed for the naive estimate (default 20)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console()
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    rows = run(
        sizes,
        repeats=args.repeats,
        samples=args.samples,
        seed=args.seed,
        progress=lambda r: console.print(f"[dim]{r['target_tokens']:>6,} tokens: done[/dim]"),
    )
    meta = metadata(
        chunk_size=CHUNK_SIZE, repeats=args.repeats, samples=args.samples, seed=args.seed, argv=argv
    )
    console.print(table(rows))
    console.print(f"[dim]{meta['naive_method']}.[/dim]")
    console.print(
        f"[dim]Python {meta['python']} on {meta['platform']} ({meta['cpu_count']} CPUs), {meta['date']}[/dim]"
    )
    write_json(args.out, rows, meta)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
