"""The client side of telling: ``tell-dataset --endpoint`` against a server that streams as fast as it can.

A vLLM server on one H100 produces a few thousand tokens per second at batch 64; the
client (``storyreasoning tell-dataset --endpoint``: :class:`~storyreasoning.tell.openai.OpenAITeller`
reading the streams, the streaming parser, the run folder's records) must never be
what limits it. This script measures that client against a loopback server that does
no work: a separate process (asyncio) that answers every ``/v1/chat/completions``
request with the same pre-encoded stream of vLLM-shaped chat-completion chunks (SSE in
chunked transfer encoding, ``--tokens-per-event`` tokens per event, a role event first,
a finish event and a usage event last, then ``[DONE]``), each event its own HTTP
chunk, as uvicorn sends them, ``--write-events`` chunks per socket write. The text streamed is a real grounded story output (``examples/outputs/lighthouse.txt``
unless ``--text`` names another), cut into word-piece "tokens", so the parser does
the work it does on a model's output.

Two measurements, one after the other:

* **server alone**: ``--concurrency`` raw sockets drain the same requests and only count
  bytes, to show how fast the server delivers (it must be well above the client);
* **tell-dataset**: :func:`storyreasoning.tell.commands.tell_dataset`, the function the
  ``tell-dataset`` command runs, with ``--endpoint`` and ``--concurrency``, over a
  dataset of ``--stories`` story folders (the lighthouse example's three images, so
  each request carries real images), in this process. Its wall time and this
  process's CPU seconds (every thread; the server is another process) give tokens per
  second ingested, parsed and recorded, CPU microseconds per token and tokens per
  CPU-second: the rate one core sustains. Per-stream latency (whole story and first
  token) comes from the records' ``meta.usage``. Every record is then checked: one per
  story, its raw text exactly the text served, parsed well-structured.

Target (issue 15): 50,000 tokens per CPU-second of the client at 64 concurrent streams,
one token per event. On a shared machine read the CPU figures: the wall figures carry
the other processes' load (the server's included, on two cores). To compare with an
older checkout, run this script with ``PYTHONPATH=OLD/src`` (the script is the same, the
client measured is the old one).

Run::

    python bench/client.py
    python bench/client.py --stories 256 --tokens-per-event 1,4 --repeats 3
    python bench/client.py --profile bench/results/client.prof   # cProfile of the client, every thread
    python bench/client.py --quick --out /tmp/client.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = ROOT / "examples" / "outputs" / "lighthouse.txt"
DEFAULT_STORY = ROOT / "examples" / "stories" / "lighthouse"
DEFAULT_OUT = Path(__file__).parent / "results" / "client.json"
MODEL = "bench/loopback"
TARGET = 50_000  # tokens per CPU-second of the client (issue 15)
# word pieces, roughly as a BPE tokenizer cuts a markdown table and a tagged story
TOKEN = re.compile(r" ?[A-Za-z]+| ?[0-9]{1,3}| ?[^\sA-Za-z0-9]|\s+")


def tokens_of(text: str) -> list[str]:
    """``text`` cut into word pieces that join back to it exactly."""
    pieces = TOKEN.findall(text)
    assert "".join(pieces) == text, "the token pattern must cover every character"
    return pieces


# -- the server ---------------------------------------------------------------------------------


def sse_events(text: str, tokens_per_event: int, model: str = MODEL) -> list[bytes]:
    """The ``data:`` events vLLM streams for ``text`` (each ready to send as one HTTP chunk)."""
    pieces = tokens_of(text)
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764547200, "model": model}

    def event(choices: list, **extra) -> bytes:
        data = json.dumps({**head, "choices": choices, **extra}, ensure_ascii=False, separators=(",", ":"))
        return f"data: {data}\n\n".encode()

    def choice(delta: dict, finish: str | None = None) -> dict:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [event([choice({"role": "assistant", "content": ""})])]
    for at in range(0, len(pieces), tokens_per_event):
        events.append(event([choice({"content": "".join(pieces[at : at + tokens_per_event])})]))
    events.append(event([choice({"content": ""}, "stop")]))
    usage = {"prompt_tokens": 2048, "total_tokens": 2048 + len(pieces), "completion_tokens": len(pieces)}
    events.append(event([], usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def chunked(events: list[bytes]) -> list[bytes]:
    """Each event as an HTTP/1.1 chunk, then the last chunk."""
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [b"0\r\n\r\n"]


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)


def _json_answer(data: dict) -> bytes:
    body = json.dumps(data).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def serve(text: str, tokens_per_event: int, write_events: int, pace: float = 0.0) -> None:
    """The loopback server (run in its own process): prints its port, then serves until killed.

    Every answer is pre-encoded; a stream is written ``write_events`` events per write, the
    writer drained every 64 writes; with ``pace`` (tokens per second per stream), one event
    per write, each after its time, as a model decoding. ``GET /stats`` answers the server's
    own CPU seconds."""
    import asyncio

    parts = chunked(sse_events(text, tokens_per_event))
    write_events = 1 if pace else write_events
    interval = tokens_per_event / pace if pace else 0.0
    writes = [STREAM_HEAD] + [
        b"".join(parts[i : i + write_events]) for i in range(0, len(parts), write_events)
    ]
    models = _json_answer({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})
    stats = {"requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                length = re.search(rb"(?i)^content-length:\s*(\d+)", rest, re.M)
                if length:
                    await reader.readexactly(int(length.group(1)))
                path = line.split()[1]
                if path.endswith(b"/chat/completions"):
                    stats["requests"] += 1
                    if interval:
                        start = time.perf_counter()
                        for n, piece in enumerate(writes):
                            writer.write(piece)
                            await writer.drain()
                            await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
                    for n, piece in enumerate(() if interval else writes):
                        writer.write(piece)
                        if n % 64 == 63:
                            await writer.drain()
                elif path.endswith(b"/models"):
                    writer.write(models)
                elif path.endswith(b"/stats"):
                    writer.write(_json_answer({**stats, "cpu_s": time.process_time()}))
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                if re.search(rb"(?i)^connection:\s*close", rest, re.M):
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024, limit=1 << 20)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Server:
    """The loopback server in a child process (this script with ``--serve``)."""

    def __init__(self, text_path: Path, tokens_per_event: int, write_events: int, pace: float = 0.0) -> None:
        command = [sys.executable, __file__, "--serve", "--text", str(text_path)]
        command += ["--tokens-per-event", str(tokens_per_event), "--write-events", str(write_events)]
        command += ["--pace", str(pace)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError("the loopback server did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"GET /stats HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return json.loads(data.partition(b"\r\n\r\n")[2])

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


# -- the measurements ---------------------------------------------------------------------------


def drain(port: int, requests: int, concurrency: int, body: bytes) -> tuple[float, int]:
    """``requests`` chat requests over ``concurrency`` raw sockets, their answers read and only
    counted: (seconds, bytes). What the server delivers with a client that does nothing."""
    import selectors

    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    selector = selectors.DefaultSelector()
    left, received, start = requests, 0, time.perf_counter()
    for _ in range(min(concurrency, requests)):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        left -= 1
        selector.register(sock, selectors.EVENT_READ, bytearray())
    while selector.get_map():
        for key, _ in selector.select():
            sock, tail = key.fileobj, key.data
            data = sock.recv(1 << 18)
            received += len(data)
            tail += data
            del tail[:-5]
            if tail.endswith(b"0\r\n\r\n"):  # the last chunk: the answer is complete
                tail.clear()
                if left:
                    left -= 1
                    sock.sendall(request)
                else:
                    selector.unregister(sock)
                    sock.close()
    return time.perf_counter() - start, received


def make_dataset(folder: Path, stories: int, story: Path) -> Path:
    """``stories`` story folders (the same images, cot.md and story.md) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(stories):
        target = folder / f"story{n:05d}"
        target.mkdir(exist_ok=True)
        for item in story.iterdir():
            if item.suffix in (".png", ".jpg", ".md"):
                shutil.copyfile(item, target / item.name)
    return folder


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def verify(run: Path, stories: int, text: str, tokens: int) -> dict:
    """Every story recorded once, complete (its raw text the text served) and parsed well-structured."""
    from storyreasoning.tell.run import ERRORS, RECORDS, read_lines

    records = read_lines(run / RECORDS).items
    problems = []
    if len(records) != stories or len({r["story_id"] for r in records}) != stories:
        problems.append(f"{len(records)} records for {stories} stories")
    if (run / ERRORS).exists():
        problems.append(f"failures in {run / ERRORS}")
    for record in records:
        usage = record["meta"]["usage"]
        if record["raw"] != text:
            problems.append(f"{record['story_id']}: the raw text differs from the text served")
        elif not record["well_structured"]:
            problems.append(f"{record['story_id']}: not well-structured")
        elif usage.get("completion_tokens") != tokens or usage.get("finish_reason") != "stop":
            problems.append(f"{record['story_id']}: usage {usage}")
    if problems:
        raise SystemExit("bench/client.py: the run is not what was served: " + "; ".join(problems[:5]))
    seconds = [r["meta"]["usage"]["seconds"] for r in records]
    first = [r["meta"]["usage"]["first_token_seconds"] for r in records]
    return {
        "records": len(records),
        "all_complete_and_well_structured": True,
        "story_s_p50": statistics.median(seconds),
        "story_s_p90": percentile(seconds, 0.9),
        "story_s_max": max(seconds),
        "first_token_s_p50": statistics.median(first),
        "first_token_s_p90": percentile(first, 0.9),
    }


def tell_once(
    server: Server, data: Path, run: Path, concurrency: int, text: str, tokens: int, stories: int, profile
) -> dict:
    """One ``tell-dataset`` run in this process: wall and CPU seconds, the server's CPU, the checks."""
    import contextlib
    import io

    from storyreasoning.tell.commands import tell_dataset
    from storyreasoning.tell.settings import TellDatasetSettings

    settings = TellDatasetSettings(
        source=str(data), out=run, endpoint=server.url, concurrency=concurrency, max_new_tokens=4096
    )
    before = server.stats()
    if profile is not None:
        profile.start()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()) as said:
        code = tell_dataset(settings)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profile is not None:
        profile.stop()
    after = server.stats()
    if code != 0:
        raise SystemExit(f"bench/client.py: tell-dataset failed ({code}): {said.getvalue()[-500:]}")
    total = tokens * stories
    return {
        "wall_s": wall,
        "client_cpu_s": cpu,
        "server_cpu_s": after["cpu_s"] - before["cpu_s"],
        "tokens": total,
        "tokens_per_s": total / wall,
        "tokens_per_cpu_s": total / cpu,
        "cpu_us_per_token": cpu / total * 1e6,
        **verify(run, stories, text, tokens),
    }


class Profile:
    """cProfile in every thread the run starts (``threading.setprofile``), merged at the end."""

    def __init__(self) -> None:
        self.profiles: list = []

    def start(self) -> None:
        import cProfile
        import threading

        def per_thread(*_args) -> None:
            profile = cProfile.Profile(time.thread_time)
            self.profiles.append(profile)
            sys.setprofile(None)
            profile.enable()

        main = cProfile.Profile(time.thread_time)
        self.profiles.append(main)
        threading.setprofile(per_thread)
        main.enable()

    def stop(self) -> None:
        import threading

        threading.setprofile(None)
        for profile in self.profiles:
            profile.disable()

    def write(self, path: Path) -> str:
        import io
        import pstats

        stats = pstats.Stats(self.profiles[0], stream=io.StringIO())
        for profile in self.profiles[1:]:
            stats.add(profile)
        path.parent.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(str(path))
        out = io.StringIO()
        stats.stream = out
        stats.sort_stats("tottime").print_stats(25)
        return out.getvalue()


def run(args: argparse.Namespace) -> list[dict]:
    text = args.text.read_text(encoding="utf-8")
    tokens = len(tokens_of(text))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        data = make_dataset(Path(tmp) / "stories", args.stories, args.story)
        runs = args.runs or Path(tmp)
        body = json.dumps({"model": MODEL, "messages": [], "stream": True}).encode()
        for per_event in args.tokens_per_event:
            server = Server(args.text, per_event, args.write_events, args.pace)
            try:
                events = -(-tokens // per_event)
                alone = [
                    drain(server.port, args.stories, args.concurrency, body) for _ in range(args.repeats)
                ]
                seconds, received = min(alone)
                cpu = server.stats()["cpu_s"]
                rows.append(
                    {
                        "table": "server",
                        "tokens_per_event": per_event,
                        "pace": args.pace,
                        "events_per_story": events,
                        "concurrency": args.concurrency,
                        "stories": args.stories,
                        "wall_s": seconds,
                        "tokens_per_s": tokens * args.stories / seconds,
                        "mb_per_s": received / seconds / 1e6,
                        "server_cpu_s_all_rounds": cpu,
                    }
                )
                # a warm-up run first: imports (the SDK, pydantic) and first calls are not the client's steady cost
                warm = make_dataset(Path(tmp) / "warm", 1, args.story)
                tell_once(server, warm, Path(tmp) / f"warm-{per_event}", 1, text, tokens, 1, None)
                best = None
                for n in range(args.repeats):
                    result = tell_once(
                        server, data, runs / f"run-{per_event}-{n}", args.concurrency, text, tokens,
                        args.stories, None,
                    )  # fmt: skip
                    if best is None or result["client_cpu_s"] < best["client_cpu_s"]:
                        best = result
                if args.profile and per_event == args.tokens_per_event[0]:  # one more run, not in the table
                    profile = Profile()
                    tell_once(
                        server, data, Path(tmp) / f"profile-{per_event}", args.concurrency, text, tokens,
                        args.stories, profile,
                    )  # fmt: skip
                    print(profile.write(args.profile))
                    print(f"wrote {args.profile} (CPU time of every thread)")
                rows.append(
                    {
                        "table": "client",
                        "tokens_per_event": per_event,
                        "pace": args.pace,
                        "events_per_story": events,
                        "tokens_per_story": tokens,
                        "concurrency": args.concurrency,
                        "stories": args.stories,
                        **best,
                    }
                )
            finally:
                server.close()
    return rows


def tables(rows: list[dict], pace: float = 0.0):
    from rich.table import Table

    paced = f", paced at {pace:,.0f} tokens/s a stream" if pace else ""
    server = Table(title=f"The loopback server alone (raw sockets drain its streams{paced})")
    for column in ("tokens/event", "streams", "stories", "wall s", "tokens/s", "MB/s"):
        server.add_column(column, justify="right")
    for r in (r for r in rows if r["table"] == "server"):
        server.add_row(
            str(r["tokens_per_event"]), str(r["concurrency"]), str(r["stories"]), f"{r['wall_s']:.2f}",
            f"{r['tokens_per_s']:,.0f}", f"{r['mb_per_s']:.0f}",
        )  # fmt: skip
    client = Table(
        title=f"tell-dataset --endpoint: ingested, parsed and recorded (target {TARGET:,} tokens/CPU-s){paced}"
    )
    columns = ("tokens/event", "streams", "stories", "wall s", "tokens/s", "client CPU s", "µs CPU/token")
    for column in (*columns, "tokens/CPU-s", "story p50 s", "p90 s", "first token p50 s", "server CPU s"):
        client.add_column(column, justify="right")
    for r in (r for r in rows if r["table"] == "client"):
        client.add_row(
            str(r["tokens_per_event"]), str(r["concurrency"]), str(r["stories"]), f"{r['wall_s']:.2f}",
            f"{r['tokens_per_s']:,.0f}", f"{r['client_cpu_s']:.2f}", f"{r['cpu_us_per_token']:.1f}",
            f"{r['tokens_per_cpu_s']:,.0f}", f"{r['story_s_p50']:.2f}", f"{r['story_s_p90']:.2f}",
            f"{r['first_token_s_p50']:.3f}", f"{r['server_cpu_s']:.2f}",
        )  # fmt: skip
    return server, client


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON results (default bench/results/client.json)"
    )
    ap.add_argument("--quick", action="store_true", help="8 stories, 4 streams, one round: a smoke run")
    ap.add_argument("--stories", type=int, help="stories told per run (default 256, quick 8)")
    ap.add_argument(
        "--concurrency", type=int, help="streams in flight: tell-dataset --concurrency (default 64, quick 4)"
    )
    ap.add_argument(
        "--tokens-per-event",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 4],
        help="comma-separated tokens per SSE event, one row each (default 1,4)",
    )
    ap.add_argument(
        "--write-events", type=int, default=16, help="events the server writes at once (default 16)"
    )
    ap.add_argument(
        "--repeats", type=int, help="runs of each case, the least client CPU kept (default 3, quick 1)"
    )
    ap.add_argument(
        "--text", type=Path, default=DEFAULT_TEXT, help="the output text streamed (default lighthouse.txt)"
    )
    ap.add_argument(
        "--story", type=Path, default=DEFAULT_STORY, help="the story folder copied into the dataset"
    )
    ap.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="tokens per second per stream, one event per write, as a model decoding (default 0: as fast as it can)",
    )
    ap.add_argument("--runs", type=Path, help="keep the run folders here (default: a temporary folder)")
    ap.add_argument(
        "--profile", type=Path, help="write a cProfile of one more client run here (every thread)"
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.text.read_text(encoding="utf-8"), args.tokens_per_event[0], args.write_events, args.pace)
        return 0
    args.stories = args.stories or (8 if args.quick else 256)
    args.concurrency = args.concurrency or (4 if args.quick else 64)
    args.repeats = args.repeats or (1 if args.quick else 3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from rich.console import Console

    from _common import write_results

    rows = run(args)
    console = Console(width=max(Console().width, 150))
    for table in tables(rows, args.pace):
        console.print(table)
    out = write_results(
        args.out,
        "client",
        rows,
        argv,
        text=str(args.text.relative_to(ROOT) if args.text.is_relative_to(ROOT) else args.text),
        write_events=args.write_events,
        pace_tokens_per_s_per_stream=args.pace,
        repeats=args.repeats,
        target_tokens_per_cpu_s=TARGET,
        timer="time.perf_counter (wall) and time.process_time (this process, every thread; the server is "
        "another process), the run with the least client CPU kept",
    )
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
