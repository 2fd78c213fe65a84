"""A small dataset built from real image files, for the data tests."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from storyreasoning.data import StorySample
from storyreasoning.format import parse_output

LIGHTHOUSE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"


def image_bytes(width: int, height: int, seed: int, fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", (width, height), (30 * seed % 256, 90, 200 - 20 * seed % 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 5, height // 5, width // 2, height // 2), fill=(250, 220 - 10 * seed % 200, 0))
    draw.ellipse((width // 2, height // 3, width - 5, height - 5), outline=(0, 0, 0), width=3)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def lighthouse_texts() -> tuple[str, str]:
    telling = parse_output(LIGHTHOUSE.read_text(encoding="utf-8"))
    return telling.cot_text, telling.story_text


def fixture_samples(n: int = 5) -> list[StorySample]:
    """``n`` three-frame stories (PNG and JPEG frames of 640x480), some with per-frame sources."""
    cot, story = lighthouse_texts()
    samples = []
    for i in range(n):
        frames = [image_bytes(640, 480, 3 * i + k, "JPEG" if k % 2 else "PNG") for k in range(3)]
        meta = [{"source": f"movie{i % 2}", "shot": k} for k in range(3)] if i % 2 else None
        samples.append(StorySample(f"s{i:02d}", frames, cot, story, frame_meta=meta))
    return samples
