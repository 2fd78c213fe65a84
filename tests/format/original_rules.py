"""An oracle that follows the original parser's documented rules (reference §1.2, §1.5).

Written from the rule descriptions, not from the original code, so that tests can
check that our parser reads every text the original reads the same way. Only used
on texts the original handles; its known defects (dropping a last row without a
newline, losing the first column of a row without a leading pipe) are kept on
purpose, and the generators avoid inputs where those defects would fire.
"""

from __future__ import annotations

import re

SETTING_VALUES = [
    "Location",
    "Environment",
    "Lighting",
    "Weather",
    "Time Period",
    "Architecture",
    "Interior Design",
    "Atmosphere",
    "Background",
]
PHASE_VALUES = ["Introduction", "Development", "Conflict", "Turning Point", "Conclusion"]


def _enum(text: str, values: list[str], default: str) -> str:
    key = text.upper().replace(" ", "_")
    for v in values:
        if v.upper().replace(" ", "_") == key:
            return v
    for v in values:
        if v.lower() in text.lower():
            return v
    return default


def _image_sections(cot: str) -> list[tuple[int, str]]:
    sections = []
    n = 1
    while True:
        m = re.search(rf"## Image {n}\s*\n", cot)
        if not m:
            break
        start = m.end()
        nxt = re.search(r"## Image \d+", cot[start:])
        end = start + nxt.start() if nxt else len(cot)
        sections.append((n, cot[start:end]))
        n += 1
    return sections


def _table_lines(section: str, heading: str) -> list[str]:
    at = section.find(heading)
    if at == -1:
        return []
    rest = section[at + len(heading) :]
    lines = rest.split("\n")[1:]  # the rest of the heading line
    # skip blank lines directly after the heading, then take consecutive non-empty lines
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    out = []
    while i < len(lines) and lines[i].strip():
        out.append(lines[i])
        i += 1
    # a last row without a trailing newline is dropped (the original's regex needs "\n")
    if out and i == len(lines):
        out.pop()
    return out


def _read_table(lines: list[str]) -> list[dict[str, str]]:
    if len(lines) < 2:
        return []
    headers = [h.strip() for h in lines[0].split("|")]
    headers = [h for h in headers if h and set(h) != {"-"}]
    rows = []
    for line in lines[2:]:
        if "|" not in line:
            continue
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) >= len(headers):
            rows.append(dict(zip(headers, cells, strict=False)))
    return rows


def parse_cot_original(cot: str) -> dict:
    images = []
    for n, section in _image_sections(cot):
        chars = _read_table(_table_lines(section, "### Characters"))
        objs = _read_table(_table_lines(section, "### Objects"))
        sets = _read_table(_table_lines(section, "### Setting"))
        images.append(
            {
                "number": n,
                "characters": [
                    [
                        r.get(k, "")
                        for k in (
                            "Character ID",
                            "Name",
                            "Description",
                            "Emotions",
                            "Actions",
                            "Narrative Function",
                            "Bounding Box",
                        )
                    ]
                    for r in chars
                ],
                "objects": [
                    [
                        r.get(k, "")
                        for k in (
                            "Object ID",
                            "Description",
                            "Function",
                            "Interaction",
                            "Narrative Function",
                            "Bounding Box",
                        )
                    ]
                    for r in objs
                ],
                "settings": [
                    [_enum(r.get("Setting Element", ""), SETTING_VALUES, "Location")]
                    + [r.get(k, "") for k in ("Description", "Mood", "Time", "Narrative Function")]
                    for r in sets
                ],
            }
        )
    narrative = None
    at = cot.find("## Narrative Structure")
    if at != -1:
        lines = [ln for ln in cot[at:].split("\n")[1:]]
        i = 0
        while i < len(lines) and not lines[i].strip():
            i += 1
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        narrative = [
            [_enum(r.get("Narrative Phase", ""), PHASE_VALUES, "Introduction")]
            + [r.get(k, "") for k in ("Description", "Key Events", "Images")]
            for r in _read_table(block)
        ]
    return {"images": images, "narrative": narrative}


def parse_story_original(story: str) -> list[tuple[int, str, list[tuple[str, list[str], str]]]]:
    segments = []
    for m in re.finditer(r"<gdi image(\d+)>(.*?)</gdi>", story, re.DOTALL):
        inner = m.group(2).strip()
        spans = [
            (s.group(1), s.group(2).split(), s.group(3))
            for s in re.finditer(r"<(gdo|gda|gdl)\s+([^>]*)>(.*?)</\1>", inner, re.DOTALL)
        ]
        segments.append((int(m.group(1)), inner, spans))
    return sorted(segments, key=lambda s: s[0])


def extract_story_original(text: str) -> str:
    """The original story extraction, *with* its off-by-one bug after </think>."""
    end = text.find("</think>")
    if end == -1:
        return "" if "<think>" in text else text.strip()
    return text[end + 9 :].strip()
