"""A short film of two scenes made from real photographs, with known shots, key frames and scenes.

Real faces (see ``face_scenes.py`` and ``data/faces/CREDITS.md``) placed on painted sets,
320 × 240 at 10 frames per second, 2 s per shot; every frame zooms in 1 % and moves one
pixel, as a slow camera does:

* scene 1, a warm set: shot 1 Barack Obama (``obama-1``, a medium shot); shot 2 Joe
  Biden on the same set seen from the reverse angle (the set's gradient upside down:
  a cut for the shot detector, the same colours for the scene rule); shot 3 a close-up
  of Obama from another photograph (``obama-2``), which fills the frame: it looks like
  neither shot before it, but shares a face with shot 1, two back;
* scene 2, a cool set: shot 4 Eileen Collins, whose frames 7 to 12 (of 0 to 19) are
  blurred as by a focus pull, so the shot's middle frame (9) is blurred; shot 5 Grace
  Hopper from the reverse angle.

So ``--scenes faces`` finds the two scenes; ``--scenes visual`` splits the close-up off
scene 1 (three scenes), and ``--key-frame middle`` takes the blurred frame of shot 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .face_scenes import SOURCES

WIDTH, HEIGHT, FPS = 320, 240, 10
SHOT = 20  # frames per shot
SETS = {"warm": ((90, 60, 40), (200, 170, 120)), "cool": ((30, 50, 80), (150, 170, 200))}


@dataclass(frozen=True)
class Shot:
    source: str
    set: str
    reverse: bool = False  # the set from the other side: its gradient upside down
    close: bool = False  # a close-up of the face, filling the frame
    blurred: range = range(0)  # frames (of this shot) out of focus


FILM = [
    Shot("obama-1", "warm"),
    Shot("biden-1", "warm", reverse=True),
    Shot("obama-2", "warm", close=True),
    Shot("collins", "cool", blurred=range(7, 13)),
    Shot("hopper", "cool", reverse=True),
]
SCENES_BY_FACES = [1, 1, 1, 2, 2]
SCENES_BY_LOOK = [1, 1, 2, 3, 3]
BLURRED = {3 * SHOT + k for k in FILM[3].blurred}  # frame numbers in the film


def _set(name: str, reverse: bool):
    import numpy as np
    from PIL import Image

    top, bottom = (np.array(c, dtype=np.float64) for c in SETS[name])
    if reverse:
        top, bottom = bottom, top
    t = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    rows = top[None, None] + (bottom - top)[None, None] * t
    stripes = 10 * np.sin(np.arange(WIDTH) / 7.0)[None, :, None]  # wallpaper, so the set has texture
    return Image.fromarray(np.clip(np.repeat(rows, WIDTH, axis=1) + stripes, 0, 255).astype(np.uint8))


def frames(shot: Shot):
    """The RGB PIL frames of one shot."""
    from PIL import Image, ImageFilter

    path, _, (fx1, fy1, fx2, fy2) = SOURCES[shot.source]
    photo = Image.open(path).convert("RGB")
    if shot.close:
        cx, cy, half = (fx1 + fx2) / 2, (fy1 + fy2) / 2, (fx2 - fx1) * 1.1
        photo = photo.crop(
            (round(cx - half), round(cy - half * 0.8), round(cx + half), round(cy + half * 0.8))
        )
    for k in range(SHOT):
        frame = _set(shot.set, shot.reverse)
        height = round((HEIGHT if shot.close else 200) * (1 + 0.01 * k))
        width = round(photo.width * height / photo.height)
        x = round((WIDTH - width) / 2) + k - SHOT // 2
        y = (HEIGHT - height) // 2 if shot.close else HEIGHT - height
        frame.paste(photo.resize((width, height), Image.LANCZOS), (x, y))
        yield frame.filter(ImageFilter.GaussianBlur(3)) if k in shot.blurred else frame


def write_film(path: Path, shots: list[Shot] = FILM) -> Path:
    """The film as MJPEG in AVI (every OpenCV build writes and reads it back frame for frame)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened(), "this OpenCV cannot write MJPEG"
    try:
        for shot in shots:
            for frame in frames(shot):
                writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
