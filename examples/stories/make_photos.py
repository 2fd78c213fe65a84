"""Regenerate the photo frames of the bundled stories from their public-domain/CC0 sources.

    pip install scikit-image matplotlib     # only to obtain the source photographs
    python examples/stories/make_photos.py  # rewrites pioneers/0N.jpg and cat-and-coffee/0N.jpg

The sources (see ``CREDITS.md`` for authors and licences):

* ``skimage.data.astronaut()`` - NASA portrait of astronaut Eileen Collins (512x512);
* ``grace_hopper.jpg`` from matplotlib's sample data - U.S. Navy portrait of Commodore
  Grace M. Hopper (512x600);
* ``skimage.data.chelsea()`` - Chelsea the cat (451x300);
* ``skimage.data.coffee()`` - a cup of espresso (600x400).

Every frame is a crop of a source, resized (Lanczos) to at most 640 pixels on its long
side, or two such crops side by side (a split frame, as in a comic panel), saved as
JPEG quality 90. The CoT boxes of ``pioneers/cot.md`` and ``cat-and-coffee/cot.md`` were
written for these frames: if you change a crop, redraw the boxes and check them.
JPEG encoders differ slightly between Pillow/libjpeg versions, so the rewritten files
may differ in a few bytes; the crops, sizes and content stay the same.

``python examples/stories/make_photos.py OUT_DIR`` writes the two story folders' frames
under ``OUT_DIR`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
QUALITY = 90

Crop = tuple[int, int, int, int]  # (left, top, right, bottom) in source pixels


def sources() -> dict[str, Image.Image]:
    """The four source photographs as RGB PIL images."""
    try:
        import skimage.data
        from matplotlib import cbook
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise SystemExit(
            f"make_photos.py needs scikit-image and matplotlib ({exc}); pip install scikit-image matplotlib"
        ) from None
    hopper_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return {
        "astronaut": Image.fromarray(skimage.data.astronaut()).convert("RGB"),
        "hopper": Image.open(hopper_path).convert("RGB"),
        "chelsea": Image.fromarray(skimage.data.chelsea()).convert("RGB"),
        "coffee": Image.fromarray(skimage.data.coffee()).convert("RGB"),
    }


def reframe(image: Image.Image, crop: Crop, size: tuple[int, int]) -> Image.Image:
    """``crop`` of ``image`` resized to ``size`` (width, height)."""
    return image.crop(crop).resize(size, Image.Resampling.LANCZOS)


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two panels of the same height in one frame, left then right."""
    if left.height != right.height:
        raise ValueError("panels of a split frame must have the same height")
    frame = Image.new("RGB", (left.width + right.width, left.height))
    frame.paste(left, (0, 0))
    frame.paste(right, (left.width, 0))
    return frame


def pioneers(src: dict[str, Image.Image]) -> list[Image.Image]:
    """Eileen Collins (char1) and Grace Hopper (char2): two portraits, a split frame, a close-up."""
    eileen, grace = src["astronaut"], src["hopper"]
    return [
        eileen.copy(),  # 512x512, the whole portrait
        grace.copy(),  # 512x600, the whole portrait
        side_by_side(  # 640x400: both women, head and shoulders
            reframe(eileen, (40, 0, 440, 500), (320, 400)),
            reframe(grace, (36, 0, 476, 550), (320, 400)),
        ),
        reframe(eileen, (100, 0, 360, 260), (480, 480)),  # 480x480: Eileen's face
    ]


def cat_and_coffee(src: dict[str, Image.Image]) -> list[Image.Image]:
    """Chelsea the cat (char1) and the cup of espresso (obj1)."""
    cat, coffee = src["chelsea"], src["coffee"]
    return [
        cat.copy(),  # 451x300, the cat
        coffee.copy(),  # 600x400, the cup on its saucer
        side_by_side(  # 600x300: the cat's eyes, the cup
            reframe(cat, (100, 40, 360, 300), (300, 300)),
            reframe(coffee, (150, 0, 450, 300), (300, 300)),
        ),
    ]


STORIES = {"pioneers": pioneers, "cat-and-coffee": cat_and_coffee}


def main(out: Path = HERE) -> list[Path]:
    src = sources()
    written = []
    for story, make in STORIES.items():
        folder = out / story
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(make(src), start=1):
            if max(frame.size) > 640:
                raise ValueError(f"{story} frame {i} is {frame.size}, larger than 640 px")
            path = folder / f"{i:02d}.jpg"
            frame.save(path, format="JPEG", quality=QUALITY, optimize=True)
            written.append(path)
    return written


if __name__ == "__main__":
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
