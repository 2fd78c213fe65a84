"""Showing tellings in a terminal (rich): summaries, diagnostics, coloured stories.

rich is imported by the functions that draw, never at import: what a command prints to a
file or a pipe (help, one-line errors, JSON) needs no rich (see :func:`is_terminal`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from .format.stream import Telling
    from .format.validate import Verdict


def is_terminal(stream) -> bool:
    """Whether rich would draw on ``stream`` as on a terminal (colours, boxes), decided without rich.

    The rules are rich's own: ``TTY_COMPATIBLE=0|1`` decides, then a non-empty ``FORCE_COLOR``
    means yes, otherwise the stream must be a TTY. Where this is false, rich would print
    plain text, so a command can print that text itself and skip importing rich.
    """
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


# The colours of the original interface: entities blue, actions cyan, locations pink.
TAG_STYLES = {"gdo": "bold #4361ee", "gda": "bold #4cc9f0", "gdl": "bold #f72585"}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}


def story_text(telling: Telling):
    """The story as rich Text, tags shown as colours with their ids."""
    from rich.text import Text

    out = Text()
    if telling.story is None:
        return out
    for i, segment in enumerate(telling.story.segments):
        if i:
            out.append("\n\n")
        label = f"Image {segment.image}" if segment.image is not None else "(outside any image)"
        out.append(label + "\n", style="bold underline")
        for part in segment.parts:
            if isinstance(part, str):
                out.append(part.strip("\n") if part is segment.parts[0] else part)
            else:
                out.append(part.text, style=TAG_STYLES.get(part.kind, "bold"))
                if part.ids:
                    out.append("[" + " ".join(part.ids) + "]", style="dim")
    return out


#: Rows a summary table shows (a 16 MB output has ~100,000 segments: rich would draw for minutes);
#: ``--json`` lists them all.
SUMMARY_ROWS = 50


def print_summary(console: Console, telling: Telling, verdict: Verdict, *, title: str, kind: str) -> None:
    """What ``storyreasoning check`` prints: entities per image, segments, tags, findings, verdict.

    Every text (``title``, the model's ids and phases) is printed as plain text, never read as rich
    markup; each table shows its first :data:`SUMMARY_ROWS` rows and says how many more there are."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text.assemble((title, "bold"), f"  ({kind})"))
    cot, story = telling.cot, telling.story
    if cot is not None:
        table = Table(title="Chain of thought", title_justify="left", show_edge=False)
        for col in ("image", "characters", "objects", "settings"):
            table.add_column(col)
        for image in cot.images[:SUMMARY_ROWS]:
            table.add_row(
                str(image.number),
                Text(" ".join(c.id for c in image.characters) or "-"),
                Text(" ".join(o.id for o in image.objects) or "-"),
                str(len(image.settings)),
            )
        console.print(table)
        _more(console, len(cot.images), "images")
        if cot.narrative is None:
            console.print("Narrative Structure: [red]missing[/red]")
        else:
            phases = ", ".join(row.phase for row in cot.narrative[:SUMMARY_ROWS]) or "(empty)"
            more = (
                f", … {len(cot.narrative) - SUMMARY_ROWS} more" if len(cot.narrative) > SUMMARY_ROWS else ""
            )
            console.print(Text(f"Narrative Structure: {len(cot.narrative)} rows: {phases}{more}"))
        appearances = cot.appearances()
        multi = sum(1 for frames in appearances.values() if len(frames) >= 2)
        console.print(f"Entities: {len(appearances)} ({multi} in two or more images)")
    if story is not None:
        table = Table(title="Story", title_justify="left", show_edge=False)
        for col in ("segment", "gdo", "gda", "gdl", "ids"):
            table.add_column(col)
        for segment in story.segments[:SUMMARY_ROWS]:
            kinds = Counter(span.kind for span in segment.spans)
            ids = sorted({eid for span in segment.spans for eid in span.ids})
            table.add_row(
                f"image {segment.image}" if segment.image is not None else "outside",
                str(kinds["gdo"]),
                str(kinds["gda"]),
                str(kinds["gdl"]),
                Text(" ".join(ids) or "-"),
            )
        console.print(table)
        _more(console, len(story.segments), "segments")
    print_diagnostics(console, verdict.findings)
    print_verdict(console, verdict)


def _more(console: Console, total: int, what: str) -> None:
    """The line under a table cut at :data:`SUMMARY_ROWS`."""
    if total > SUMMARY_ROWS:
        console.print(f"[dim]… {total - SUMMARY_ROWS:,} more {what} (--json lists them all)[/dim]")


def print_verdict(console: Console, verdict: Verdict) -> None:
    """One line: well-structured, or not and how many errors decide it."""
    if verdict.well_structured:
        console.print("[bold green]well-structured[/bold green]")
    else:
        n = len(verdict.reasons)
        console.print(f"[bold red]not well-structured[/bold red]: {n} error{'s' if n != 1 else ''}")


def print_diagnostics(console: Console, findings) -> None:
    from rich.table import Table
    from rich.text import Text

    if not findings:
        console.print("No findings.")
        return
    table = Table(title=f"Findings ({len(findings)})", title_justify="left", show_edge=False)
    for col in ("line", "severity", "code", "message"):
        table.add_column(col, overflow="fold")
    # cut, the errors come first: they are what decides the verdict
    shown = (
        findings
        if len(findings) <= SUMMARY_ROWS
        else sorted(findings, key=lambda d: d.severity.value != "error")
    )
    for d in shown[:SUMMARY_ROWS]:
        style = SEVERITY_STYLES.get(d.severity.value, "")
        table.add_row(
            str(d.line) if d.line else "-",
            f"[{style}]{d.severity.value}[/{style}]",
            Text(d.code),
            Text(d.message),  # messages quote model text: never read it as markup
        )
    console.print(table)
    _more(console, len(findings), "findings")


# Box colours per entity kind (the id prefix), as in the HTML view.
KIND_STYLES = {"char": "bold #4361ee", "obj": "bold #e76f00", "bg": "bold #2a9d8f", "lm": "bold #b5179e"}


def _id_text(entity_id: str):
    from rich.text import Text

    from .format.cot import id_kind

    return Text(entity_id, style=KIND_STYLES.get(id_kind(entity_id) or "", "bold"))


def _box_text(row):
    from rich.text import Text

    if row.box is not None:
        return Text(str(row.box))
    if row.box_text:
        return Text(row.box_text, style="red")
    return Text("-", style="dim")


def _table(title: str, headers: tuple[str, ...]):
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, title_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=header in ("id", "box"))
    return table


def print_telling(console: Console, telling: Telling, *, title: str, verdict: Verdict | None = None) -> None:
    """A whole telling: the CoT tables per image, the narrative structure, the coloured story,
    the findings and (when ``verdict`` is given) the verdict.

    Every text from the model is printed as plain text, never read as rich markup.
    """
    from rich.text import Text

    console.print(Text(title, style="bold"))
    cot = telling.cot
    if cot is None:
        console.print(Text("No chain of thought.", style="yellow"))
    else:
        for image in cot.images:
            console.rule(Text(f"Image {image.number}", style="bold"), align="left")
            if image.characters:
                table = _table("Characters", ("id", "name", "description", "box"))
                for c in image.characters:
                    table.add_row(_id_text(c.id), Text(c.name), Text(c.description), _box_text(c))
                console.print(table)
            else:
                console.print(Text("no characters", style="dim"))
            if image.objects:
                table = _table("Objects", ("id", "description", "box"))
                for o in image.objects:
                    table.add_row(_id_text(o.id), Text(o.description), _box_text(o))
                console.print(table)
            else:
                console.print(Text("no objects", style="dim"))
            if image.settings:
                table = _table("Setting", ("element", "description", "mood", "time"))
                for s in image.settings:
                    table.add_row(Text(s.element), Text(s.description), Text(s.mood), Text(s.time))
                console.print(table)
            else:
                console.print(Text("no settings", style="dim"))
        console.rule(Text("Narrative Structure", style="bold"), align="left")
        if cot.narrative is None:
            console.print(Text("missing", style="red"))
        elif not cot.narrative:
            console.print(Text("(empty)", style="dim"))
        else:
            table = _table("", ("phase", "description", "key events", "images"))
            for row in cot.narrative:
                table.add_row(
                    Text(row.phase), Text(row.description), Text(row.key_events), Text(row.images_text)
                )
            console.print(table)
    console.rule(Text("Story", style="bold"), align="left")
    if telling.story is None:
        console.print(Text("No story.", style="yellow"))
    else:
        console.print(story_text(telling))
    console.print()
    print_diagnostics(console, verdict.findings if verdict is not None else telling.diagnostics)
    if verdict is not None:
        print_verdict(console, verdict)


#: Seconds between two progress lines where stderr is no terminal (a log file, a pipe); the environment
#: variable ``STORYREASONING_PROGRESS_SECONDS`` sets another interval.
PROGRESS_SECONDS = 30.0


def _progress_seconds() -> float:
    try:
        seconds = float(os.environ.get("STORYREASONING_PROGRESS_SECONDS", PROGRESS_SECONDS))
    except ValueError:
        return PROGRESS_SECONDS
    return seconds if seconds >= 0 else PROGRESS_SECONDS


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 5 min``, ``14 h``: a duration as a person reads it in a log."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes and hours < 10 else f"{hours + (minutes >= 30)} h"


def _rate(per_second: float) -> str:
    if per_second >= 1:
        return f"{per_second:,.1f}/s"
    if per_second * 60 >= 1:
        return f"{per_second * 60:,.1f}/min"
    return f"{per_second * 3600:,.1f}/h"


class PlainProgress:
    """Progress as plain lines, for a stderr that is no terminal (``nohup … 2>log``, a pipe, a CI log).

    ``advance(n)`` counts; a line such as ``writing parquet: 1,200/3,552 stories (34%), 18.2/s, about
    2 min left`` is written at most every ``interval`` seconds, and one more when the job ends (:meth:`close`)
    if it ran that long: a job that ends sooner writes nothing, so short commands stay quiet.

    The rate leaves out the first ``advance`` (a resumed job counts the work it finds done at once)
    and counts from the moment it was made. ``clock`` is for tests (``time.monotonic``).
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        unit: str = "",
        interval: float | None = None,
        stream=None,
        clock=None,
    ) -> None:
        import sys
        import threading
        import time

        self.total, self.label, self.unit = total, label, unit
        self.interval = _progress_seconds() if interval is None else interval
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()
        self.done = 0
        self._base: tuple[float, int] | None = None  # (time, count) after the first advance
        self._lock = threading.Lock()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = self.clock()
            if self._base is None:
                self._base = (now, self.done)
            finished = self.total is not None and self.done >= self.total  # close() says it
            if now - self.last >= self.interval and not finished:
                self.last = now
                self._write(self.line(now))

    def close(self) -> None:
        """The closing line, when the job ran at least one interval (else nothing)."""
        with self._lock:
            now = self.clock()
            if now - self.start >= self.interval:
                self._write(self.line(now, final=True))

    def _count(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total is None:
            return f"{self.done:,}{unit}"
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        return f"{self.done:,}/{self.total:,}{unit}{share}"

    def line(self, now: float, *, final: bool = False) -> str:
        parts = [f"{self.label}: {self._count()}"]
        per_second = None
        if self._base is not None and now > self._base[0] and self.done > self._base[1]:
            per_second = (self.done - self._base[1]) / (now - self._base[0])
        if final:
            parts[0] += f" in {_duration(now - self.start)}"
            if per_second:
                parts.append(_rate(per_second))
        elif per_second:
            parts.append(_rate(per_second))
            if self.total is not None and self.total > self.done:
                parts.append(f"about {_duration(max(1.0, (self.total - self.done) / per_second))} left")
        return ", ".join(parts)

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or full log: progress is never worth failing the job
            pass


def no_progress(total: int | None, label: str, *, unit: str = ""):
    """A progress callback's stand-in where none is shown (a library call, a distributed launch's other
    processes): the same shape as :func:`progress_bar`, yielding an ``advance(n)`` that does nothing."""
    from contextlib import nullcontext

    return nullcontext(lambda n=1: None)


@contextmanager
def progress_bar(total: int | None, label: str, *, unit: str = "") -> Iterator:
    """Progress on stderr; yields ``advance(n)``. On a terminal, a rich progress bar. Elsewhere (a log
    file, a pipe), where rich would draw nothing but a newline, a plain line at most every 30 seconds
    and one at the end (:class:`PlainProgress`; nothing for a job that ends sooner), and rich.progress
    (about 50 ms to import) is not imported. ``unit`` names what is counted (``stories``)."""
    import sys

    if not is_terminal(sys.stderr):
        plain = PlainProgress(total, label, unit=unit)
        yield plain.advance
        plain.close()  # not after an error: its own line says what happened
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, highlight=False),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)
