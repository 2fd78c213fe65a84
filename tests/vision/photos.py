"""Real photographs for the vision and baseline tests, and frames cut from them.

The photograph is matplotlib's bundled public-domain portrait of Grace Hopper
(``mpl-data/sample_data/grace_hopper.jpg``, 512x600, an official U.S. Navy photograph).
Her face lies at about ``(150, 100)-(380, 330)``; its centre is :data:`FACE_CENTRE`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

# centre of Grace Hopper's face in the original photograph (x, y), measured by hand
FACE_CENTRE = (264, 216)
FULL = (0, 0, 512, 600)
CROP = (60, 40, 460, 480)  # a tighter frame
MIRROR_CROP = (20, 60, 512, 560)  # shifted, then mirrored


def grace_hopper(scale: float = 1.0) -> Image.Image:
    """The portrait, optionally resized by ``scale`` (the detectors are quicker on smaller images)."""
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():  # pragma: no cover - every matplotlib wheel ships it
        pytest.skip(f"matplotlib's sample photo {path} is missing")
    with Image.open(path) as im:
        photo = im.convert("RGB")
    if scale != 1.0:
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
    return photo


def gradient(width: int = 400, height: int = 300) -> Image.Image:
    """A frame with no one in it: a smooth blue-green gradient."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 2] = np.linspace(60, 230, width, dtype=np.uint8)[None, :]
    pixels[..., 1] = np.linspace(40, 120, height, dtype=np.uint8)[:, None]
    return Image.fromarray(pixels)


def expected_face_centre(frame: int, scale: float = 1.0) -> tuple[float, float]:
    """Where the face centre should be in frame 1 (full), 2 (crop) and 3 (mirrored crop)
    of :func:`make_frames` made with the same ``scale``."""
    x, y = FACE_CENTRE
    if frame == 1:
        return x * scale, y * scale
    if frame == 2:
        return (x - CROP[0]) * scale, (y - CROP[1]) * scale
    width = MIRROR_CROP[2] - MIRROR_CROP[0]
    return (width - (x - MIRROR_CROP[0])) * scale, (y - MIRROR_CROP[1]) * scale


def make_frames(folder: Path, scale: float = 1.0) -> list[Path]:
    """Four numbered frames: the portrait, a crop, a shifted mirrored crop, a gradient (no one);
    ``scale`` resizes the portrait first (crops are scaled with it)."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = grace_hopper(scale)

    def scaled(box: tuple[int, int, int, int]) -> tuple[int, ...]:
        return tuple(round(v * scale) for v in box)

    paths = [folder / "frame1.jpg", folder / "frame2.jpg", folder / "frame3.png", folder / "frame4.png"]
    photo.save(paths[0], quality=92)
    photo.crop(scaled(CROP)).save(paths[1], quality=92)
    ImageOps.mirror(photo.crop(scaled(MIRROR_CROP))).save(paths[2])
    gradient().save(paths[3])
    return paths


def side_by_side(scale: float = 1.0) -> Image.Image:
    """Two copies of the portrait side by side (the right one mirrored): two faces in one frame."""
    photo = grace_hopper(scale)
    pair = Image.new("RGB", (2 * photo.width, photo.height))
    pair.paste(photo, (0, 0))
    pair.paste(ImageOps.mirror(photo), (photo.width, 0))
    return pair
