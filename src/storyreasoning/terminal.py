"""Showing tellings in a terminal (rich): summaries, diagnostics, coloured stories."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from .format.stream import Telling
    from .format.validate import Verdict

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


def print_summary(console: Console, telling: Telling, verdict: Verdict, *, title: str, kind: str) -> None:
    """What ``storyreasoning check`` prints: entities per image, segments, tags, findings, verdict."""
    from rich.table import Table

    console.print(f"[bold]{title}[/bold]  ({kind})")
    cot, story = telling.cot, telling.story
    if cot is not None:
        table = Table(title="Chain of thought", title_justify="left", show_edge=False)
        for col in ("image", "characters", "objects", "settings"):
            table.add_column(col)
        for image in cot.images:
            table.add_row(
                str(image.number),
                " ".join(c.id for c in image.characters) or "-",
                " ".join(o.id for o in image.objects) or "-",
                str(len(image.settings)),
            )
        console.print(table)
        if cot.narrative is None:
            console.print("Narrative Structure: [red]missing[/red]")
        else:
            phases = ", ".join(row.phase for row in cot.narrative) or "(empty)"
            console.print(f"Narrative Structure: {len(cot.narrative)} rows: {phases}")
        appearances = cot.appearances()
        multi = sum(1 for frames in appearances.values() if len(frames) >= 2)
        console.print(f"Entities: {len(appearances)} ({multi} in two or more images)")
    if story is not None:
        table = Table(title="Story", title_justify="left", show_edge=False)
        for col in ("segment", "gdo", "gda", "gdl", "ids"):
            table.add_column(col)
        for segment in story.segments:
            kinds = Counter(span.kind for span in segment.spans)
            ids = sorted({eid for span in segment.spans for eid in span.ids})
            table.add_row(
                f"image {segment.image}" if segment.image is not None else "outside",
                str(kinds["gdo"]),
                str(kinds["gda"]),
                str(kinds["gdl"]),
                " ".join(ids) or "-",
            )
        console.print(table)
    print_diagnostics(console, verdict.findings)
    if verdict.well_structured:
        console.print("[bold green]well-structured[/bold green]")
    else:
        n = len(verdict.reasons)
        console.print(f"[bold red]not well-structured[/bold red]: {n} error{'s' if n != 1 else ''}")


def print_diagnostics(console: Console, findings) -> None:
    from rich.table import Table

    if not findings:
        console.print("No findings.")
        return
    table = Table(title=f"Findings ({len(findings)})", title_justify="left", show_edge=False)
    for col in ("line", "severity", "code", "message"):
        table.add_column(col, overflow="fold")
    for d in findings:
        style = SEVERITY_STYLES.get(d.severity.value, "")
        table.add_row(
            str(d.line) if d.line else "-", f"[{style}]{d.severity.value}[/{style}]", d.code, d.message
        )
    console.print(table)
