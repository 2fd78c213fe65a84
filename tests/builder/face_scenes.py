"""Stories of real faces with known identities, and the identity score of a built dataset against them.

The photographs (see ``data/faces/CREDITS.md``):

* Barack Obama: three White House photographs taken on different days, in different
  rooms and light, with different framing (``obama-1``: Oval Office portrait, close;
  ``obama-2``: at a podium, speaking; ``obama-3``: standing in the Blue Room, small
  face);
* Joe Biden: one photograph (``biden-1``), from the same Blue Room sitting as ``obama-3``:
  same light, same room, another man;
* Eileen Collins and Grace Hopper: one portrait each (``examples/stories/pioneers``).

Every frame is made here from those photographs: the photograph as it is, or one or
more of them cropped, flipped, scaled, darkened or lightened and pasted side by side on
a plain or graded backdrop. The true identity of every pasted person is known, and so
is where their face lands. The face boxes of the sources were read off by hand.

The score: every true person of a frame is credited with at most one ``char`` row of the
built CoT. That row's box must hold the true face's centre, and among such rows the
one whose centre lies nearest the face wins. The reference telling then has, per frame,
one row per true person with the true identity as its id. A credited person's row takes
the candidate row's box. A person no row found takes their pasted panel's box, so the
miss counts as a false negative. Rows credited to no one are false positives. The built
stories are scored against that reference with :func:`storyreasoning.evaluate.identity.identity`.
So the score is about ids, not box geometry (the grounding metrics judge boxes). It
still counts every person missed and every row that is no one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parents[2]
FACES = Path(__file__).resolve().parent / "data" / "faces"
PIONEERS = ROOT / "examples" / "stories" / "pioneers"

# source name -> (path, identity, face box (x1, y1, x2, y2) in its pixels, read off by hand)
SOURCES = {
    "obama-1": (FACES / "obama-1.jpg", "obama", (201, 81, 357, 237)),
    "obama-2": (FACES / "obama-2.jpg", "obama", (81, 150, 237, 306)),
    "obama-3": (FACES / "obama-3.jpg", "obama", (179, 80, 255, 156)),
    "biden-1": (FACES / "biden-1.jpg", "biden", (126, 66, 216, 157)),
    "collins": (PIONEERS / "01.jpg", "collins", (175, 76, 266, 167)),
    "hopper": (PIONEERS / "02.jpg", "hopper", (180, 139, 367, 326)),
}


@dataclass(frozen=True)
class Panel:
    """One photograph placed in a frame: which, the part of it kept, how it is changed."""

    source: str
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # fractions of the source
    flip: bool = False
    light: float = 1.0  # brightness factor
    contrast: float = 1.0
    blur: float = 0.0  # Gaussian radius, source pixels
    grey: bool = False


@dataclass(frozen=True)
class Truth:
    identity: str
    panel: tuple[int, int, int, int]  # where the panel landed, frame pixels
    face: tuple[float, float]  # the face's centre, frame pixels


BACKDROPS = {
    "grey": ((128, 128, 128), (128, 128, 128)),
    "warm": ((90, 60, 40), (200, 170, 120)),
    "cool": ((30, 50, 80), (150, 170, 200)),
}


def _backdrop(size: tuple[int, int], name: str) -> Image.Image:
    top, bottom = BACKDROPS[name]
    height = size[1]
    column = Image.new("RGB", (1, height))
    for y in range(height):
        t = y / max(1, height - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return column.resize(size)


def compose(panels: list[Panel], *, size: tuple[int, int] = (640, 400), backdrop: str = "grey"):
    """A frame: the panels side by side, each scaled to the frame's height, on a backdrop; with the truth."""
    width, height = size
    frame = _backdrop(size, backdrop)
    truths: list[Truth] = []
    slot = width / len(panels)
    for k, panel in enumerate(panels):
        path, identity, (fx1, fy1, fx2, fy2) = SOURCES[panel.source]
        image = Image.open(path).convert("RGB")
        sw, sh = image.size
        cx1, cy1, cx2, cy2 = (round(v * s) for v, s in zip(panel.crop, (sw, sh, sw, sh), strict=True))
        part = image.crop((cx1, cy1, cx2, cy2))
        fcx, fcy = (fx1 + fx2) / 2 - cx1, (fy1 + fy2) / 2 - cy1
        if panel.flip:
            part = ImageOps.mirror(part)
            fcx = part.width - fcx
        if panel.light != 1.0:
            part = ImageEnhance.Brightness(part).enhance(panel.light)
        if panel.contrast != 1.0:
            part = ImageEnhance.Contrast(part).enhance(panel.contrast)
        if panel.blur:
            part = part.filter(ImageFilter.GaussianBlur(panel.blur))
        if panel.grey:
            part = ImageOps.grayscale(part).convert("RGB")
        scale = min(height / part.height, slot / part.width)
        part = part.resize(
            (max(1, round(part.width * scale)), max(1, round(part.height * scale))), Image.LANCZOS
        )
        x = round(k * slot + (slot - part.width) / 2)
        y = round((height - part.height) / 2)
        frame.paste(part, (x, y))
        truths.append(
            Truth(identity, (x, y, x + part.width, y + part.height), (x + fcx * scale, y + fcy * scale))
        )
    return frame, truths


def photo(source: str, **changes) -> tuple[Image.Image, list[Truth]]:
    """A photograph alone, at its own size (only cropped or changed as asked)."""
    panel = Panel(source, **changes)
    path = SOURCES[source][0]
    with Image.open(path) as im:
        w, h = im.size
    c = panel.crop
    return compose([panel], size=(round((c[2] - c[0]) * w), round((c[3] - c[1]) * h)))


# Four stories. Obama appears in all of them, from all three of his photographs.
def stories() -> dict[str, list[tuple[Image.Image, list[Truth]]]]:
    return {
        "white-house": [
            photo("obama-1"),
            photo("biden-1"),
            photo("obama-2"),
            photo("obama-3"),
            compose([Panel("biden-1"), Panel("obama-2")], backdrop="warm"),
            photo("obama-1", crop=(0.15, 0.0, 0.9, 0.6), light=0.6),
            compose([Panel("biden-1", flip=True, crop=(0.0, 0.0, 1.0, 0.7))], backdrop="cool"),
        ],
        "pioneers-meet": [
            photo("collins"),
            photo("hopper"),
            photo("obama-3", crop=(0.1, 0.0, 0.9, 0.5)),
            compose([Panel("collins", flip=True, light=1.3), Panel("hopper")], backdrop="grey"),
            photo("obama-1", flip=True, contrast=0.7),
            photo("hopper", light=0.55),
        ],
        "gathering": [
            compose([Panel("obama-1"), Panel("biden-1"), Panel("collins")], size=(900, 400), backdrop="warm"),
            compose([Panel("hopper"), Panel("obama-2", flip=True)], backdrop="cool"),
            compose([Panel("obama-3"), Panel("collins", crop=(0.1, 0.0, 0.9, 0.8))], backdrop="grey"),
            compose(
                [Panel("biden-1", light=0.7), Panel("hopper", flip=True), Panel("obama-1", light=1.2)],
                size=(900, 400),
                backdrop="cool",
            ),
        ],
        "hard-light": [
            photo("obama-2", blur=2.0, grey=True),
            compose([Panel("biden-1")], size=(900, 300), backdrop="warm"),
            photo("obama-1", crop=(0.45, 0.0, 1.0, 0.6)),
            compose([Panel("hopper"), Panel("collins"), Panel("obama-3")], size=(900, 300), backdrop="grey"),
            photo("obama-3", light=0.45),
            compose([Panel("biden-1", grey=True), Panel("obama-2", light=0.6, blur=1.5)], backdrop="cool"),
        ],
    }


def write_stories(root: Path) -> dict[str, list[list[Truth]]]:
    """Write the stories as folders of frames under ``root``; return the truth of every frame."""
    out: dict[str, list[list[Truth]]] = {}
    for name, frames in stories().items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        out[name] = []
        for number, (image, truths) in enumerate(frames, start=1):
            image.save(folder / f"{number:02d}.jpg", quality=92)
            out[name].append(truths)
    return out


def reference(candidate, truths: list[list[Truth]]):
    """The reference telling of a built story (see the module doc): true ids, boxes credited from the candidate."""
    import copy

    from storyreasoning.format.box import Box
    from storyreasoning.format.cot import Character, CoT, ImageAnalysis
    from storyreasoning.format.stream import Telling

    images = []
    for number, frame_truths in enumerate(truths, start=1):
        analysis = candidate.cot.image(number) if candidate.cot is not None else None
        rows = [c for c in (analysis.characters if analysis else []) if c.box is not None]
        options = []
        for t_index, truth in enumerate(frame_truths):
            fx, fy = truth.face
            for r_index, row in enumerate(rows):
                b = row.box
                if b.x1 <= fx <= b.x2 and b.y1 <= fy <= b.y2:
                    options.append((abs((b.x1 + b.x2) / 2 - fx), t_index, r_index))
        options.sort()
        credited: dict[int, int] = {}
        used: set[int] = set()
        for _, t_index, r_index in options:
            if t_index in credited or r_index in used:
                continue
            credited[t_index] = r_index
            used.add(r_index)
        characters = []
        for t_index, truth in enumerate(frame_truths):
            box = rows[credited[t_index]].box if t_index in credited else Box(*truth.panel)
            characters.append(Character(truth.identity, truth.identity, box=box))
        objects = copy.deepcopy(analysis.objects) if analysis else []
        images.append(ImageAnalysis(number, characters, objects))
    return Telling(raw="", cot=CoT(images=images))


def identity_scores(dataset: Path, truths: dict[str, list[list[Truth]]]) -> dict:
    """The identity metric of the built stories in ``dataset`` against the truth (the ``overall`` scores)."""
    from storyreasoning.data.folder import read_story_folder
    from storyreasoning.evaluate.identity import identity
    from storyreasoning.evaluate.pairs import StoryPair

    pairs = []
    for name, frame_truths in truths.items():
        sample = read_story_folder(dataset / name)
        candidate = sample.telling()
        pairs.append(StoryPair(name, reference(candidate, frame_truths), candidate, sample.frame_sizes()))
    return identity(pairs).overall
