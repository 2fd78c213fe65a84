"""What an embedder sees of a detection: its box on a square, everything else masked.

A raw crop of a person box is tall and narrow. An image processor squashes it to its
square input size, so the same person is squashed differently in a close-up and in a
wide shot, and a crop cut wider than its box shows the neighbours and the background.
:func:`square_crop` keeps the box's own pixels unscaled relative to each other and
centres them on a square of one neutral colour. The embedder then sees the detection's
shape as it is, and nothing of the frame outside the box. The default neutral colour is
the ImageNet mean, which most vision models normalise to zero.

A box is a rectangle. Whatever lies inside it stays, which may be part of another person
who stands in front. Masking to the person's own outline would need an instance mask,
such as a segmenter's; this module does not make one.
"""

from __future__ import annotations

from typing import Any

from ..format.box import Box

NEUTRAL = (124, 116, 104)  # the ImageNet mean, in 0..255


def square_crop(image: Any, box: Box, *, fill: tuple[int, int, int] = NEUTRAL, min_side: int = 2) -> Any:
    """The box's pixels centred on a square canvas of ``fill`` (a PIL RGB image of side max(width, height)).

    The box is clipped to the image first. A box thinner than ``min_side`` pixels gives a
    ``min_side`` square of ``fill``.
    """
    from PIL import Image

    from ..format.images import rgb_image

    rgb = rgb_image(image)
    width, height = rgb.size
    x1, y1 = max(0, min(box.x1, width)), max(0, min(box.y1, height))
    x2, y2 = max(0, min(box.x2, width)), max(0, min(box.y2, height))
    w, h = x2 - x1, y2 - y1
    side = max(w, h, min_side)
    canvas = Image.new("RGB", (side, side), tuple(fill))
    if w > 0 and h > 0:
        canvas.paste(rgb.crop((x1, y1, x2, y2)), ((side - w) // 2, (side - h) // 2))
    return canvas


__all__ = ["NEUTRAL", "square_crop"]
