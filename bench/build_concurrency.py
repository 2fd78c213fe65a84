"""The build loop's --concurrency: stories per second against an endpoint that takes a while to answer.

A chat-writer build spends nearly all its time waiting for the language model: two
answers per story (the analysis, then the story), each seconds long on a real server,
which serves many requests at once (vLLM batches them). This script builds the same
stories with 1, 2, 4 and 8 stories in flight against a loopback OpenAI-compatible server
(the tests' FakeServer) whose every answer waits ``--delay`` seconds before it streams,
and reports the time, the stories per second, the speed-up over one at a time and the
most requests the server saw at once. Perception (the OpenCV baseline, on small frames)
runs ahead in one thread, as in a real build; every run's dataset is checked to be
byte-for-byte the one-at-a-time dataset before anything is reported. Perception alone is
timed first: no build of these stories can be faster, whatever the concurrency.

Run::

    python bench/build_concurrency.py                           # 16 stories, 1 s answers, about 1.5 min
    python bench/build_concurrency.py --stories 8 --delay 0.2 --concurrency 1,4
    python bench/build_concurrency.py --out bench/results/build_concurrency.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).parent / "results" / "build_concurrency.json"


def make_stories(root: Path, count: int) -> Path:
    """``count`` two-frame stories of the examples' photographs, 200 pixels long (people in every one)."""
    from PIL import Image, ImageOps

    from storyreasoning.data.folder import frame_files

    examples = ROOT / "examples" / "stories"
    sources = frame_files(examples / "pioneers") + frame_files(examples / "lighthouse")[:2]
    for k in range(count):
        folder = root / f"story{k:03d}"
        folder.mkdir(parents=True)
        for j in range(2):
            image = Image.open(sources[(k + j) % len(sources)]).convert("RGB")
            image.thumbnail((200 - 4 * (k // len(sources) % 10), 200))  # every story its own bytes
            if k // len(sources) % 2:
                image = ImageOps.mirror(image)
            image.save(folder / f"{j + 1:02d}.png")
    return root


def dataset_bytes(out: Path) -> dict[str, dict[str, bytes]]:
    return {
        story.name: {f.name: f.read_bytes() for f in sorted(story.iterdir())}
        for story in sorted(out.iterdir())
        if story.is_dir() and not story.name.startswith(".")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=16)
    parser.add_argument(
        "--delay", type=float, default=1.0, help="seconds each answer waits before it streams"
    )
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated stories in flight")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.concurrency.split(",")]

    sys.path.insert(0, str(ROOT))  # the tests' loopback server and the model that reads its prompt
    from tests.builder.reading_model import answer
    from tests.tell.servers import FakeServer

    from storyreasoning.builder.pipeline import build_dataset, find_stories
    from storyreasoning.builder.writers import ChatWriter
    from storyreasoning.tell.base import Sampling
    from storyreasoning.tell.baseline import BaselineTeller
    from storyreasoning.tell.openai import OpenAITeller

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        stories, _ = find_stories(make_stories(Path(tmp) / "raw", args.stories))
        perceiver = BaselineTeller()
        began = time.perf_counter()
        for story in stories:  # perception alone: the floor under any build of these stories
            list(perceiver.see(story.frames))
        perception = time.perf_counter() - began
        reference = None
        for level in levels:
            out = Path(tmp) / f"c{level}"
            with FakeServer(respond=answer, answer_delay=args.delay) as server:
                writer = ChatWriter(
                    OpenAITeller(server.url, retries=0), sampling=Sampling(seed=0), max_tries=2
                )
                began = time.perf_counter()
                report = build_dataset(
                    stories, out, perceiver=perceiver, writer=writer, concurrency=level, require_person=False
                )
                seconds = time.perf_counter() - began
                peak = server.max_active
            if report.built != len(stories):
                raise SystemExit(f"concurrency {level}: {report.built} of {len(stories)} stories built")
            built = dataset_bytes(out)
            reference = reference or built
            if built != reference:
                raise SystemExit(f"concurrency {level}: the dataset differs from the first run's")
            rows.append(
                {
                    "concurrency": level,
                    "seconds": seconds,
                    "stories_per_second": len(stories) / seconds,
                    "speedup": rows[0]["seconds"] / seconds if rows else 1.0,
                    "peak_requests": peak,
                }
            )

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Building {args.stories} stories, answers after {args.delay:g} s")
    for name in ("concurrency", "seconds", "stories/s", "speed-up", "peak requests"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            str(row["concurrency"]),
            f"{row['seconds']:.2f}",
            f"{row['stories_per_second']:.2f}",
            f"{row['speedup']:.2f}x",
            str(row["peak_requests"]),
        )
    Console().print(table)
    print(f"perception alone: {perception:.2f} s for {len(stories)} stories (a floor under every row)")

    from _common import write_results

    write_results(
        args.out,
        "build_concurrency",
        rows,
        argv,
        stories=args.stories,
        delay=args.delay,
        perception_seconds=perception,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
