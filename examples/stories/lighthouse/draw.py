"""Draw the three 640x480 frames of the lighthouse story with PIL.

The frames depict what ``examples/outputs/lighthouse.txt`` describes, and every figure
and object is drawn inside the box that output's chain-of-thought gives it, so the
boxes of ``cot.md`` are right for these frames. The drawing is deterministic (no
randomness, no fonts): running it again gives the same pixels.

    python examples/stories/lighthouse/draw.py            # rewrites 01.png 02.png 03.png here
    python examples/stories/lighthouse/draw.py OUT_DIR    # writes them into OUT_DIR

Needs only Pillow. The frames and this script are part of the project (Apache-2.0).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 640, 480

# palette
SKIN = (226, 178, 146)
RAINCOAT = (236, 192, 38)
RAINCOAT_DARK = (196, 150, 20)
TROUSERS = (58, 62, 74)
BOOTS = (28, 26, 26)
KEEPER_COAT = (38, 48, 78)
KEEPER_CAP = (138, 32, 38)
BEARD = (196, 196, 200)
BRASS = (190, 150, 60)
BRASS_DARK = (130, 98, 34)
FLAME = (255, 150, 30)
GLASS = (255, 236, 150)
WOOD = (110, 70, 40)
WOOD_DARK = (74, 46, 26)
EYE = (30, 30, 30)


def gradient(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], top, bottom) -> None:
    """A vertical colour gradient filling ``box`` (one line per row)."""
    x1, y1, x2, y2 = box
    span = max(1, y2 - y1 - 1)
    for y in range(y1, y2):
        t = (y - y1) / span
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line((x1, y, x2 - 1, y), fill=colour)


def rain(draw: ImageDraw.ImageDraw, seed: int, count: int, colour, region=(0, 0, WIDTH, HEIGHT)) -> None:
    """Slanted rain streaks at positions from a small linear congruential generator."""
    state = seed
    x1, y1, x2, y2 = region
    for _ in range(count):
        state = (1103515245 * state + 12345) % 2**31
        x = x1 + state % (x2 - x1)
        state = (1103515245 * state + 12345) % 2**31
        y = y1 + state % (y2 - y1)
        draw.line((x, y, x - 6, y + 16), fill=colour, width=1)


def lantern(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    """A brass storm lantern filling ``box`` exactly: handle, cap, lit glass, base."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) // 2
    handle_h = h * 2 // 7
    draw.arc((cx - w // 4, y1, cx + w // 4, y1 + 2 * handle_h), 180, 360, fill=BRASS_DARK, width=3)
    cap_top, cap_bottom = y1 + handle_h, y1 + handle_h + h // 7
    draw.polygon(
        [(cx - w // 4, cap_top), (cx + w // 4, cap_top), (x2 - 4, cap_bottom), (x1 + 4, cap_bottom)],
        fill=BRASS,
    )
    base_top = y2 - h // 6
    draw.rectangle((x1 + 5, cap_bottom, x2 - 5, base_top), fill=GLASS, outline=BRASS_DARK, width=2)
    draw.ellipse((cx - w // 7, cap_bottom + 4, cx + w // 7, base_top - 4), fill=FLAME)
    draw.rectangle((x1, base_top, x2 - 1, y2 - 1), fill=BRASS, outline=BRASS_DARK)


def ines_face(draw: ImageDraw.ImageDraw, hood: tuple[int, int, int, int], facing: int) -> None:
    """A yellow hood with a face inside; ``facing`` +1 looks right, -1 left."""
    x1, y1, x2, y2 = hood
    draw.ellipse(hood, fill=RAINCOAT, outline=RAINCOAT_DARK, width=2)
    inset = (x2 - x1) // 5
    face = (x1 + inset + 2 * facing, y1 + inset, x2 - inset + 2 * facing, y2 - 3)
    draw.ellipse(face, fill=SKIN)
    cy = (face[1] + face[3]) // 2 - 2
    cx = (face[0] + face[2]) // 2 + 4 * facing
    draw.ellipse((cx - 8, cy - 2, cx - 4, cy + 2), fill=EYE)
    draw.ellipse((cx + 4, cy - 2, cx + 8, cy + 2), fill=EYE)
    draw.line((cx - 5, cy + 12, cx + 5, cy + 12), fill=(150, 80, 70), width=2)


def tomas_face(draw: ImageDraw.ImageDraw, cx: int, top: int, facing: int) -> None:
    """Wool cap, face and grey beard of the keeper; the cap's top is at ``top``."""
    draw.ellipse((cx - 22, top + 18, cx + 22, top + 70), fill=SKIN)
    draw.polygon(
        [(cx - 24, top + 45), (cx + 24, top + 45), (cx + 18, top + 88), (cx, top + 96), (cx - 18, top + 88)],
        fill=BEARD,
    )
    draw.ellipse((cx - 18 + 3 * facing, top + 60, cx + 18 + 3 * facing, top + 66), fill=SKIN)  # mouth gap
    draw.ellipse((cx - 25, top, cx + 25, top + 34), fill=KEEPER_CAP)
    draw.rectangle((cx - 27, top + 22, cx + 27, top + 34), fill=(110, 22, 28))
    ex = cx + 4 * facing
    draw.ellipse((ex - 10, top + 40, ex - 5, top + 45), fill=EYE)
    draw.ellipse((ex + 5, top + 40, ex + 10, top + 45), fill=EYE)


def limb(draw: ImageDraw.ImageDraw, start, end, width: int, colour) -> None:
    draw.line((*start, *end), fill=colour, width=width)
    r = width // 2
    draw.ellipse((start[0] - r, start[1] - r, start[0] + r, start[1] + r), fill=colour)


def hand(draw: ImageDraw.ImageDraw, centre, r: int = 7) -> None:
    draw.ellipse((centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r), fill=SKIN)


# ------------------------------------------------------------------------------------------
# Image 1: Ines (102,88,214,402) climbs the cliff path with her lantern (188,190,226,246)
# toward the unlit lighthouse (430,20,560,330), at dusk, in wind and rain.
def frame1() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    gradient(draw, (0, 0, WIDTH, 250), (46, 40, 78), (196, 120, 96))  # dusk sky
    gradient(draw, (0, 250, WIDTH, HEIGHT), (52, 70, 92), (24, 34, 52))  # the sea
    for i in range(9):  # whitecaps
        x = 20 + 71 * i
        draw.line((x, 272 + (i % 3) * 14, x + 22, 270 + (i % 3) * 14), fill=(170, 186, 200), width=2)
    # the headland and the cliff path
    draw.polygon(
        [(0, 320), (180, 330), (330, 346), (420, 322), (600, 318), (640, 336), (640, 480), (0, 480)],
        fill=(58, 74, 44),
    )
    draw.polygon(
        [
            (0, 440),
            (90, 392),
            (230, 372),
            (390, 342),
            (486, 329),
            (504, 329),
            (430, 352),
            (270, 404),
            (140, 428),
            (70, 480),
            (0, 480),
        ],
        fill=(132, 104, 72),
    )
    for rock in (
        [(560, 420), (610, 400), (640, 420), (640, 480), (548, 480)],
        [(10, 360), (50, 344), (80, 370), (40, 392)],
    ):
        draw.polygon(rock, fill=(92, 92, 96))
    # the lighthouse: dome, dark lantern room, gallery, striped tower
    draw.pieslice((470, 20, 520, 80), 180, 360, fill=(150, 36, 36))
    draw.rectangle((466, 50, 524, 80), fill=(70, 76, 86), outline=(30, 30, 34), width=2)
    for x in (485, 505):
        draw.line((x, 50, x, 80), fill=(30, 30, 34), width=2)
    draw.rectangle((430, 80, 559, 90), fill=(40, 40, 44))
    draw.polygon([(452, 90), (538, 90), (549, 329), (441, 329)], fill=(236, 236, 230))
    for top in (140, 230):
        t0, t1 = (top - 90) / 240, (top + 35 - 90) / 240
        draw.polygon(
            [
                (452 - 11 * t0, top),
                (538 + 11 * t0, top),
                (538 + 11 * t1, top + 35),
                (452 - 11 * t1, top + 35),
            ],
            fill=(176, 40, 40),
        )
    draw.rectangle((486, 280, 504, 329), fill=(60, 44, 30))
    # Ines, walking right, coat blown back by the wind
    limb(draw, (128, 170), (112, 270), 14, RAINCOAT_DARK)  # back arm
    draw.polygon([(124, 142), (176, 142), (200, 334), (102, 344)], fill=RAINCOAT, outline=RAINCOAT_DARK)
    draw.line((150, 150, 151, 330), fill=RAINCOAT_DARK, width=2)
    limb(draw, (112, 338), (118, 386), 18, TROUSERS)
    limb(draw, (170, 336), (188, 384), 18, TROUSERS)
    draw.polygon([(104, 384), (132, 384), (134, 401), (104, 401)], fill=BOOTS)
    draw.polygon([(176, 382), (204, 382), (212, 401), (178, 401)], fill=BOOTS)
    ines_face(draw, (122, 88, 182, 150), facing=1)
    limb(draw, (170, 160), (204, 186), 14, RAINCOAT)  # arm holding the lantern
    lantern(draw, (188, 190, 226, 246))
    hand(draw, (207, 191))
    rain(draw, seed=1, count=260, colour=(180, 190, 205))
    return image


# ------------------------------------------------------------------------------------------
# Image 2: at night Ines (60,70,190,410, lantern 150,200,186,252) stands at the foot of the
# tower; Tomas (300,60,450,415) has dragged open the heavy door (260,30,470,430).
def frame2() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    gradient(draw, (0, 0, WIDTH, 410), (10, 14, 34), (30, 40, 70))  # night sky
    for x, y in ((30, 40), (90, 110), (160, 30), (200, 160), (590, 60), (610, 190), (40, 230)):
        draw.point([(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)], fill=(230, 230, 200))
    draw.rectangle((226, 0, 504, 430), fill=(170, 172, 168))  # the tower's base, stone courses
    for y in range(20, 430, 36):
        draw.line((226, y, 504, y), fill=(140, 142, 140), width=2)
        offset = 0 if (y // 36) % 2 else 30
        for x in range(226 + offset, 504, 60):
            draw.line((x, y, x, y + 36), fill=(140, 142, 140), width=2)
    draw.rectangle((0, 410, WIDTH, HEIGHT), fill=(64, 64, 70))  # the ground
    draw.rectangle((240, 428, 490, 446), fill=(110, 110, 114))  # door step
    # the heavy door: wooden arch frame, lit doorway, the door leaf dragged open inward
    draw.ellipse((260, 30, 469, 240), fill=WOOD_DARK)
    draw.rectangle((260, 135, 469, 429), fill=WOOD_DARK)
    draw.ellipse((280, 50, 449, 220), fill=(250, 196, 110))
    draw.rectangle((280, 135, 449, 429), fill=(250, 196, 110))
    draw.polygon([(424, 96), (449, 80), (449, 429), (424, 418)], fill=WOOD)
    for y in (160, 300):
        draw.rectangle((424, y, 449, y + 8), fill=(40, 40, 44))  # iron straps
    # Tomas in the doorway, one hand on the door
    limb(draw, (343, 150), (312, 290), 18, KEEPER_COAT)
    limb(draw, (400, 150), (440, 230), 18, KEEPER_COAT)
    draw.polygon([(338, 142), (404, 142), (424, 336), (316, 336)], fill=KEEPER_COAT)
    for y in (180, 220, 260):
        draw.ellipse((376, y, 382, y + 6), fill=BRASS)
    limb(draw, (352, 330), (352, 398), 24, TROUSERS)
    limb(draw, (388, 330), (388, 398), 24, TROUSERS)
    draw.rectangle((336, 398, 367, 414), fill=BOOTS)
    draw.rectangle((373, 398, 405, 414), fill=BOOTS)
    hand(draw, (310, 296), 9)
    hand(draw, (441, 232), 9)
    tomas_face(draw, 370, 60, facing=-1)
    # Ines, facing the door, lantern in her right hand
    limb(draw, (96, 146), (80, 280), 14, RAINCOAT_DARK)
    draw.polygon([(94, 128), (156, 128), (184, 334), (60, 342)], fill=RAINCOAT, outline=RAINCOAT_DARK)
    draw.line((125, 136, 124, 336), fill=RAINCOAT_DARK, width=2)
    limb(draw, (100, 336), (100, 392), 20, TROUSERS)
    limb(draw, (140, 336), (140, 392), 20, TROUSERS)
    draw.rectangle((86, 392, 116, 409), fill=BOOTS)
    draw.rectangle((126, 392, 158, 409), fill=BOOTS)
    ines_face(draw, (95, 70, 155, 132), facing=1)
    limb(draw, (150, 144), (167, 192), 14, RAINCOAT_DARK)
    lantern(draw, (150, 200, 186, 252))
    hand(draw, (168, 199))
    rain(draw, seed=2, count=200, colour=(120, 130, 150))
    return image


# ------------------------------------------------------------------------------------------
# Image 3: in the lamp room Tomas (80,120,230,420) turns the crank while Ines (330,110,450,420)
# holds up her lantern (372,150,410,205) to the great lamp (200,10,420,200); through the
# window (0,0,640,120) the dark sea, the beam sweeping across it.
def frame3() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    # the window: night sky, dark sea, the beam, a small boat
    gradient(draw, (0, 0, WIDTH, 36), (8, 10, 24), (20, 24, 44))
    gradient(draw, (0, 36, WIDTH, 120), (18, 34, 56), (8, 16, 30))
    for i in range(12):
        x = 8 + 53 * i
        draw.line((x, 60 + (i % 4) * 12, x + 18, 58 + (i % 4) * 12), fill=(60, 84, 110), width=2)
    draw.polygon([(330, 80), (640, 30), (640, 104)], fill=(236, 204, 110))
    draw.polygon([(566, 76), (606, 76), (598, 86), (572, 86)], fill=(40, 30, 24))  # the boat
    draw.line((586, 58, 586, 76), fill=(40, 30, 24), width=2)
    for x in (0, 158, 474, 634):
        draw.rectangle((x, 0, x + 5, 119), fill=(60, 50, 40))
    draw.rectangle((0, 112, WIDTH - 1, 119), fill=(60, 50, 40))
    # the lamp room: panelled walls, plank floor, the pedestal with its gears and crank
    gradient(draw, (0, 120, WIDTH, 400), (120, 80, 44), (80, 50, 28))
    for x in range(40, WIDTH, 80):
        draw.line((x, 120, x, 400), fill=(70, 44, 24), width=2)
    draw.rectangle((0, 400, WIDTH, HEIGHT), fill=(92, 60, 36))
    for y in (420, 446, 470):
        draw.line((0, y, WIDTH, y), fill=(62, 40, 22), width=2)
    draw.rectangle((280, 200, 340, 400), fill=BRASS_DARK)
    for cx, cy, r in ((300, 300, 30), (262, 262, 18)):
        for k in range(12):
            draw.pieslice((cx - r - 5, cy - r - 5, cx + r + 5, cy + r + 5), 30 * k, 30 * k + 12, fill=BRASS)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=BRASS, outline=BRASS_DARK, width=2)
        draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), fill=BRASS_DARK)
    draw.line((262, 262, 222, 262), fill=(60, 60, 64), width=6)  # the crank
    # the great lamp: brass crown, glowing lens with prism rings, brass base
    draw.polygon([(262, 10), (358, 10), (376, 30), (244, 30)], fill=BRASS)
    draw.rounded_rectangle((216, 30, 404, 170), radius=30, fill=(255, 224, 120), outline=BRASS_DARK, width=3)
    draw.ellipse((266, 60, 354, 140), fill=(255, 248, 210))
    for y in range(46, 170, 16):
        draw.line((222, y, 398, y), fill=(220, 180, 80), width=1)
    draw.rectangle((200, 170, 419, 199), fill=BRASS, outline=BRASS_DARK, width=2)
    # Tomas, facing right, hand on the crank
    limb(draw, (126, 214), (92, 330), 18, KEEPER_COAT)
    draw.polygon([(120, 206), (190, 206), (210, 386), (100, 386)], fill=KEEPER_COAT)
    for y in (240, 280, 320):
        draw.ellipse((166, y, 172, y + 6), fill=BRASS)
    limb(draw, (182, 214), (216, 260), 18, KEEPER_COAT)
    limb(draw, (134, 380), (134, 404), 26, TROUSERS)
    limb(draw, (174, 380), (174, 404), 26, TROUSERS)
    draw.rectangle((116, 404, 152, 419), fill=BOOTS)
    draw.rectangle((156, 404, 194, 419), fill=BOOTS)
    hand(draw, (90, 335), 9)
    hand(draw, (219, 262), 9)
    tomas_face(draw, 155, 120, facing=1)
    # Ines, facing the lamp, the lantern raised in her right hand
    limb(draw, (346, 186), (340, 300), 14, RAINCOAT_DARK)
    draw.polygon([(342, 166), (408, 166), (449, 394), (333, 394)], fill=RAINCOAT, outline=RAINCOAT_DARK)
    draw.line((378, 172, 386, 392), fill=RAINCOAT_DARK, width=2)
    limb(draw, (362, 392), (362, 404), 22, TROUSERS)
    limb(draw, (410, 392), (410, 404), 22, TROUSERS)
    draw.rectangle((348, 404, 378, 419), fill=BOOTS)
    draw.rectangle((396, 404, 428, 419), fill=BOOTS)
    hand(draw, (338, 305))
    ines_face(draw, (332, 110, 390, 168), facing=-1)
    limb(draw, (414, 190), (396, 152), 14, RAINCOAT_DARK)
    lantern(draw, (372, 150, 410, 205))
    hand(draw, (392, 150))
    return image


FRAMES = {"01.png": frame1, "02.png": frame2, "03.png": frame3}


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw_frame in FRAMES.items():
        path = out / name
        draw_frame().save(path, optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path in main(target):
        print(path)
