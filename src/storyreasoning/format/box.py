"""Bounding boxes and the coordinate spaces they live in.

The published format stores a box as ``x1,y1,x2,y2``: whole pixels of the *original*
image, top-left and bottom-right corners. Qwen2.5-VL never sees the original image: its
processor resizes every image with the ``smart_resize`` rule (both sides multiples of
28, total pixels between ``min_pixels`` and ``max_pixels``), and the boxes a model
writes are relative to what it saw. :func:`to_model_space` and :func:`from_model_space`
convert explicitly between the two spaces.

Conversions use exact integer arithmetic with round-half-up, so they never depend on
floating-point error. Going from the coarser grid to the finer one and back is exact;
the other direction loses at most half a pixel of the coarser grid, which is the
information the resize itself throws away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .diagnostics import COMPILED, Diagnostic, error, reduce_dataclass, warning
from .records import TYPE_CHECKING, dataclass_methods

if TYPE_CHECKING:
    from typing import Final

# Qwen2.5-VL's defaults: 28 = patch 14 x merge 2.
QWEN_FACTOR: Final = 28
QWEN_MIN_PIXELS: Final = 56 * 56
QWEN_MAX_PIXELS: Final = 28 * 28 * 1280
# The original dataset validator accepts a box reaching 10% past the image edge.
EDGE_TOLERANCE: Final = 1.1


def _round_div(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves rounded up, exact for integers."""
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass(init=False, repr=False, eq=False)
class Box:
    """A pixel box ``(x1, y1, x2, y2)`` in original-image coordinates."""

    x1: int
    y1: int
    x2: int
    y2: int

    def __init__(self, x1: int, y1: int, x2: int, y2: int):
        # A frozen dataclass's own __init__ sets each field through object.__setattr__; a parse
        # makes one box per row. Compiled, the fields are set natively; as Python, writing the
        # instance dict directly costs half as much as the generated __init__.
        if COMPILED:
            self.x1 = x1  # type: ignore[misc]
            self.y1 = y1  # type: ignore[misc]
            self.x2 = x2  # type: ignore[misc]
            self.y2 = y2  # type: ignore[misc]
        else:
            d = self.__dict__
            d["x1"] = x1
            d["y1"] = y1
            d["x2"] = x2
            d["y2"] = y2

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    # Equality, hash and order as @dataclass(frozen=True, order=True) makes them (the corners as a
    # tuple, between boxes of the same class), written here so that type checkers see them too
    # (sorted(boxes)); dataclass_methods below leaves them be.
    def _key(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Box) -> bool:
        if other.__class__ is self.__class__:
            return self._key() < other._key()
        return NotImplemented

    def __le__(self, other: Box) -> bool:
        if other.__class__ is self.__class__:
            return self._key() <= other._key()
        return NotImplemented

    def __gt__(self, other: Box) -> bool:
        if other.__class__ is self.__class__:
            return self._key() > other._key()
        return NotImplemented

    def __ge__(self, other: Box) -> bool:
        if other.__class__ is self.__class__:
            return self._key() >= other._key()
        return NotImplemented

    # -- geometry ---------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    @property
    def is_proper(self) -> bool:
        """True when the box has positive width and height."""
        return self.x2 > self.x1 and self.y2 > self.y1

    def ordered(self) -> Box:
        """The same corners with x1 <= x2 and y1 <= y2."""
        return Box(min(self.x1, self.x2), min(self.y1, self.y2), max(self.x1, self.x2), max(self.y1, self.y2))

    def clip(self, width: int, height: int) -> Box:
        """Clamp every coordinate into ``[0, width] x [0, height]``."""
        return Box(
            min(max(self.x1, 0), width),
            min(max(self.y1, 0), height),
            min(max(self.x2, 0), width),
            min(max(self.y2, 0), height),
        )

    def intersection(self, other: Box) -> int:
        w = min(self.x2, other.x2) - max(self.x1, other.x1)
        h = min(self.y2, other.y2) - max(self.y1, other.y1)
        return w * h if w > 0 and h > 0 else 0

    def iou(self, other: Box) -> float:
        """Intersection over union; 0.0 when the union is empty."""
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    # -- conversions --------------------------------------------------------------------
    def to_normalized(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(x1/W, y1/H, x2/W, y2/H)``; inverse of :meth:`from_normalized`."""
        _check_size(width, height)
        return (self.x1 / width, self.y1 / height, self.x2 / width, self.y2 / height)

    @classmethod
    def from_normalized(cls, coords: tuple[float, float, float, float], width: int, height: int) -> Box:
        """Pixel box from normalised corners, rounded to the nearest pixel."""
        _check_size(width, height)
        x1, y1, x2, y2 = coords
        return cls(
            _round_half_up(x1 * width),
            _round_half_up(y1 * height),
            _round_half_up(x2 * width),
            _round_half_up(y2 * height),
        )

    def to_xywh_normalized(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Normalised top-left corner, width and height (the original ``Detection`` form)."""
        x1, y1, x2, y2 = self.to_normalized(width, height)
        return (x1, y1, x2 - x1, y2 - y1)

    def rescale(self, from_size: tuple[int, int], to_size: tuple[int, int]) -> Box:
        """Map from an image of ``from_size`` (w, h) to the same image resized to ``to_size``."""
        fw, fh = from_size
        tw, th = to_size
        _check_size(fw, fh)
        _check_size(tw, th)
        return Box(
            _round_div(self.x1 * tw, fw),
            _round_div(self.y1 * th, fh),
            _round_div(self.x2 * tw, fw),
            _round_div(self.y2 * th, fh),
        )

    def to_model_space(
        self,
        width: int,
        height: int,
        *,
        min_pixels: int = QWEN_MIN_PIXELS,
        max_pixels: int = QWEN_MAX_PIXELS,
        factor: int = QWEN_FACTOR,
    ) -> Box:
        """This box (original pixels of a ``width`` x ``height`` image) in the model's resized input."""
        rh, rw = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        return self.rescale((width, height), (rw, rh))

    def from_model_space(
        self,
        width: int,
        height: int,
        *,
        min_pixels: int = QWEN_MIN_PIXELS,
        max_pixels: int = QWEN_MAX_PIXELS,
        factor: int = QWEN_FACTOR,
    ) -> Box:
        """This box (in the model's resized input of an original ``width`` x ``height`` image) in original pixels."""
        rh, rw = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        return self.rescale((rw, rh), (width, height))

    # -- text ------------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self.x1},{self.y1},{self.x2},{self.y2}"

    def to_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]


dataclass_methods(Box, frozen=True)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """The size (height, width) Qwen2.5-VL's processor resizes an image to.

    Both sides become multiples of ``factor``, as close as possible to the original,
    with the total pixel count brought inside ``[min_pixels, max_pixels]`` while keeping
    the aspect ratio. This is the rule of the Qwen2-VL image processor; the tests check
    it against the processor itself.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of a {width}x{height} image is above 200, which Qwen2.5-VL rejects")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


# -- parsing a table cell ---------------------------------------------------------------------

_MISSING: Final = {
    "",
    "none",
    "n/a",
    "na",
    "null",
    "-",
    "--",
    "—",
    "unknown",
    "not visible",
    "not applicable",
}
_BRACKETS: Final = "[](){}"
_EXACT: Final = 2**53  # whole numbers up to this one read the same as floats (the general path) and as ints


def parse_box(cell: str, line: int = 0) -> tuple[Box | None, list[Diagnostic]]:
    """Read a ``Bounding Box`` cell tolerantly.

    Accepts the published ``x1,y1,x2,y2`` and also spaces, brackets, parentheses,
    other separators (spaces, semicolons) and decimals, each repair reported. Returns
    ``(None, [...])`` when the cell is empty or is not four numbers.
    """
    text = cell.strip()
    parts = text.split(",")
    if (
        len(parts) == 4
        and len(text) < 64
        and "" not in parts
        and text.isascii()
        and text.replace(",", "").isdigit()
    ):
        # the published form, four whole numbers: what the general path below would read
        x1, y1, x2, y2 = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
        if max(x1, y1, x2, y2) <= _EXACT:
            box = Box(x1, y1, x2, y2)
            if x2 > x1 and y2 > y1:
                return box, []
            return box, [error(line, "box-inverted", f"bounding box {box} has x2 <= x1 or y2 <= y1")]
    diags: list[Diagnostic] = []
    if text.lower() in _MISSING:
        return None, [
            warning(
                line,
                "box-missing",
                f"no bounding box given ({text!r})" if text else "empty bounding box cell",
            )
        ]
    if len(text) > 200:
        return None, [error(line, "box-unparseable", "bounding box cell is too long to be a box")]
    if any(c in text for c in _BRACKETS):
        diags.append(warning(line, "box-brackets", f"bounding box {text!r} written with brackets"))
        text = "".join(c for c in text if c not in _BRACKETS).strip()
    # Split on commas; fall back to whitespace or semicolons.
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        alt = text.replace(";", " ").replace(",", " ").split()
        if len(alt) == 4:
            diags.append(
                warning(line, "box-separators", f"bounding box {cell.strip()!r} not separated by commas")
            )
            parts = alt
    if len(parts) != 4:
        return None, [
            *diags,
            error(line, "box-unparseable", f"bounding box {cell.strip()!r} is not four numbers x1,y1,x2,y2"),
        ]
    values: list[float] = []
    for part in parts:
        value = _number(part)
        if value is None:
            return None, [
                *diags,
                error(line, "box-unparseable", f"bounding box {cell.strip()!r} has a non-number {part!r}"),
            ]
        values.append(value)
    if any(not v.is_integer() for v in values):
        if all(0.0 <= v <= 1.0 for v in values):
            return None, [
                *diags,
                error(
                    line,
                    "box-normalized",
                    f"bounding box {cell.strip()!r} looks normalised to [0,1]; pixels expected",
                ),
            ]
        diags.append(warning(line, "box-decimal", f"bounding box {cell.strip()!r} rounded to whole pixels"))
    x1, y1, x2, y2 = (_round_half_up(v) for v in values)
    box = Box(x1, y1, x2, y2)
    if not box.is_proper:
        diags.append(error(line, "box-inverted", f"bounding box {box} has x2 <= x1 or y2 <= y1"))
    if min(x1, y1, x2, y2) < 0:
        diags.append(error(line, "box-negative", f"bounding box {box} has a negative coordinate"))
    return box, diags


def _number(text: str) -> float | None:
    text = text.strip().rstrip("px").strip()
    if not text or len(text) > 24:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return value


def check_box_in_image(
    box: Box, width: int, height: int, line: int = 0, *, tolerance: float = EDGE_TOLERANCE
) -> list[Diagnostic]:
    """Findings for a box against its image size (the dataset validator's rules).

    A box may reach ``tolerance`` (10 %) past the right and bottom edges, as the
    original validator allows; beyond that it is an error, within it a warning.
    """
    diags: list[Diagnostic] = []
    if box.x2 > tolerance * width or box.y2 > tolerance * height or box.x1 >= width or box.y1 >= height:
        diags.append(
            error(line, "box-out-of-image", f"bounding box {box} lies outside the {width}x{height} image")
        )
    elif box.x2 > width or box.y2 > height:
        diags.append(
            warning(
                line,
                "box-beyond-edge",
                f"bounding box {box} reaches past the edge of the {width}x{height} image",
            )
        )
    return diags
