"""The dataset builder's speed: frames per second of each perception stage, stories per minute of the writer.

**Perception.** Every stage runs on the same frames: the photographs of
``examples/stories`` and ``tests/builder/data/faces`` (14), each fitted on a painted set
of one size (``--size``, 640x360: a film's key frames share one) and repeated, mirrored,
up to ``--frames``. The video stages run on a film the script makes from them (each
photograph one shot of ``--shot-seconds`` at 25 frames per second, slowly zooming and
panning as a camera does), written as MJPEG in AVI. Each stage is timed ``--repeat``
times after a warm-up and the best time is kept (the machine may be shared); frames are
decoded before the clock starts, except in the last row, which is a whole story's
perception as a build runs it.

==========================  ==========================================================================
shots                       PySceneDetect's ContentDetector over the film (video frames per second)
key frames                  the sharpest of nine sampled frames of every shot (video frames per second)
faces (dlib hog)            dlib's HOG face detector, landmarks and descriptors (``--faces`` default)
detection, batch N          the object detector, one image per forward, then ``--batch`` per forward
segmentation, batch N       the panoptic segmenter, likewise
embedding, batch N          the appearance embedder on six person-sized crops per frame, likewise
re-identification           ``assign`` (embedder features) and ``link`` (faces) over stories of five frames
backgrounds (colour)        colour clusters between the crops' boxes (the default without a segmenter)
perception, whole story     the build's perceiver (detector, embedder, faces, segmenter) on stories of
                            five frames, from the files
==========================  ==========================================================================

The models are tiny random ones built offline (``storyreasoning.testing``), on the CPU:
they measure the builder's own work around the models (pre- and post-processing, crops,
batching), not a real model's. ``--detector``, ``--segmenter`` and ``--embedder`` bench
real checkpoints from local folders (or hub ids already in the cache), on ``--device``
(``auto`` for real ones: the GPU when there is one).

**The writer.** ``--stories`` two-frame stories are built with the chat writer against a
loopback OpenAI-compatible server (the tests' FakeServer, answering as a model that reads
its prompt) whose every answer waits ``--delay`` seconds before it streams, with 1, 2,
4 and 8 stories in flight (``--concurrency``). Perception (the OpenCV baseline on small
frames) runs ahead in one thread, as in a real build; every run's dataset is checked to
be byte-for-byte the one-at-a-time dataset before anything is reported. Perception alone
is timed first: no build of these stories can be faster, whatever the concurrency.

Run::

    python bench/build.py                        # 20 frames, a 28 s film, 16 stories with 1 s answers
    python bench/build.py --quick                # tiny sizes, a few seconds of work (what the tests run)
    python bench/build.py --threads 1            # torch on one thread: steadier on a busy machine
    python bench/build.py --stages detection,embedding --batch 16
    python bench/build.py --detector ~/models/detr-resnet-50 --embedder ~/models/siglip-base-patch16-224 \\
        --segmenter ~/models/mask2former-swin-large-coco-panoptic --device cuda --stages detection,segmentation,embedding
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).parent / "results" / "build.json"
EXAMPLES = ROOT / "examples" / "stories"
FACES = ROOT / "tests" / "builder" / "data" / "faces"
FPS = 25
STORY = 5  # frames per story in the stages that work per story
CROPS = 6  # person-sized crops per frame for the embedder
STAGES = (
    "shots", "keyframes", "faces", "detection", "segmentation", "embedding", "reid", "backgrounds",
    "perception", "writer",
)  # fmt: skip
SETS = [((90, 60, 40), (200, 170, 120)), ((30, 50, 80), (150, 170, 200)), ((60, 80, 50), (170, 190, 140))]


# -- inputs ---------------------------------------------------------------------------------------------------


def photographs() -> list[Path]:
    from storyreasoning.data.folder import frame_files

    found = [p for folder in sorted(EXAMPLES.iterdir()) if folder.is_dir() for p in frame_files(folder)]
    return found + sorted(FACES.glob("*.jpg"))


def painted_set(size: tuple[int, int], k: int):
    """A graded backdrop with wallpaper stripes (texture for the detectors), one of three colourings."""
    import numpy as np
    from PIL import Image

    width, height = size
    top, bottom = (np.array(c, dtype=np.float64) for c in SETS[k % len(SETS)])
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    rows = top[None, None] + (bottom - top)[None, None] * t
    stripes = 10 * np.sin(np.arange(width) / 7.0)[None, :, None]
    return Image.fromarray(np.clip(np.repeat(rows, width, axis=1) + stripes, 0, 255).astype(np.uint8))


def scene(photo: Path, size: tuple[int, int], k: int, mirror: bool = False):
    """The photograph fitted into ``size`` (90 % of its height at most), standing on a painted set."""
    from PIL import Image, ImageOps

    width, height = size
    image = Image.open(photo).convert("RGB")
    if mirror:
        image = ImageOps.mirror(image)
    scale = min(0.9 * height / image.height, 0.9 * width / image.width)
    image = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS
    )
    canvas = painted_set(size, k)
    canvas.paste(image, ((width - image.width) // 2, height - image.height))
    return canvas


def make_frames(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` frames of one size from the photographs (repeated mirrored, then on other sets)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = photographs()
    out = []
    for k in range(count):
        round_ = k // len(photos)
        path = folder / f"{k + 1:05d}.png"
        scene(photos[k % len(photos)], size, k + round_, mirror=bool(round_ % 2)).save(path)
        out.append(path)
    return out


def write_film(path: Path, size: tuple[int, int], shot_seconds: float) -> tuple[Path, int, int]:
    """One shot per photograph, each zooming in 0.5 % and moving one pixel a frame; ``(path, frames, shots)``."""
    import cv2
    import numpy as np
    from PIL import Image

    width, height = size
    per_shot = max(2, round(shot_seconds * FPS))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    if not writer.isOpened():
        raise SystemExit("this OpenCV cannot write MJPEG video")
    photos = photographs()
    try:
        for k, photo in enumerate(photos):
            still = scene(photo, (width + per_shot, height + per_shot), k)
            for j in range(per_shot):
                zoom = 1 + 0.005 * j
                big = still.resize((round(still.width * zoom), round(still.height * zoom)), Image.BILINEAR)
                frame = big.crop((j, j // 2, j + width, j // 2 + height))
                writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path, per_shot * len(photos), len(photos)


def person_boxes(size: tuple[int, int]):
    """Six person-sized boxes over a frame (three columns, two rows), for the embedder and the colour clusters."""
    from storyreasoning.format.box import Box

    width, height = size
    w, h = width // 4, height // 2
    return [
        Box(x, y, x + w, y + h)
        for y in (0, height // 2)
        for x in (width // 12, width * 5 // 12, width * 3 // 4)
    ]


def tiny_models(root: Path) -> dict[str, str]:
    from storyreasoning.testing import build_tiny_detector, build_tiny_embedder, build_tiny_segmenter

    return {
        "detector": str(build_tiny_detector(root / "detector", labels=("person", "cup"))),
        "embedder": str(build_tiny_embedder(root / "embedder")),
        "segmenter": str(build_tiny_segmenter(root / "segmenter")),
    }


# -- timing ---------------------------------------------------------------------------------------------------


def best_of(
    work: Callable[[], object], repeat: int, *, warm: Callable[[], object] | None = None
) -> tuple[float, object]:
    """The best wall time of ``repeat`` runs of ``work`` (after one run of ``warm``: first-call costs) and
    what the last run returned."""
    if warm is not None:
        warm()
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - began)
    return best, result


def stage_row(stage: str, items: int, unit: str, seconds: float, note: str = "", **extra) -> dict:
    return {
        "section": "perception",
        "stage": stage,
        "items": items,
        "unit": unit,
        "seconds": seconds,
        "per_second": items / seconds if seconds > 0 else float("inf"),
        "ms_each": 1000 * seconds / items if items else 0.0,
        "note": note,
        **extra,
    }


def stories_of(items: list, size: int = STORY) -> list[list]:
    return [items[k : k + size] for k in range(0, len(items), size)]


# -- the perception stages ------------------------------------------------------------------------------------


def bench_perception(args, tmp: Path, say: Callable[[str], None]) -> list[dict]:
    from storyreasoning.tell.baseline import open_rgb

    wanted = set(args.stages)
    rows: list[dict] = []
    frames = make_frames(tmp / "frames", args.frames, args.size)
    pils = [open_rgb(p, k) for k, p in enumerate(frames, start=1)]
    boxes = [person_boxes(p.size) for p in pils]
    batches = list(dict.fromkeys((1, args.batch)))  # one image per forward, then --batch
    say(f"{len(frames)} frames of {args.size[0]}x{args.size[1]}")

    if wanted & {"shots", "keyframes"}:
        from storyreasoning.builder.video import find_shots, key_frames

        film, count, shots_made = write_film(tmp / "film.avi", args.size, args.shot_seconds)
        say(f"film: {count} frames, {shots_made} shots of {args.shot_seconds:g} s at {FPS} fps")
        if "shots" in wanted:
            seconds, shots = best_of(lambda: find_shots(film), args.repeat)
            note = f"{len(shots.bounds)} shots found"
            rows.append(stage_row("shots", shots.frames, "video frames", seconds, note))
        shots = find_shots(film)
        if "keyframes" in wanted:
            seconds, keys = best_of(lambda: list(key_frames(film, shots)), args.repeat)
            note = f"{len(keys)} key frames, 9 scored a shot"
            rows.append(stage_row("key frames", shots.frames, "video frames", seconds, note))

    faces_seen: list = []
    if wanted & {"faces", "reid"}:
        from storyreasoning.builder.faces import DlibFaces, faces_available

        if not faces_available():
            say("faces: skipped, dlib is not installed (pip install 'storyreasoning[faces]')")
        else:
            finder = DlibFaces()
            seconds, faces_seen = best_of(
                lambda: [finder.find(p) for p in pils], args.repeat, warm=lambda: finder.find(pils[0])
            )
            if "faces" in wanted:
                note = f"{sum(len(f) for f in faces_seen)} faces"
                rows.append(stage_row("faces (dlib hog)", len(pils), "frames", seconds, note))

    models, device = args.models, args.device
    if wanted & {"detection", "embedding", "reid"}:
        from storyreasoning.builder.perceive import Detection, ModelPerceiver

        perceiver = ModelPerceiver(
            models["detector"], embedder=models["embedder"], threshold=args.detector_threshold, device=device
        )

        def crops() -> list[list[Detection]]:
            return [[Detection("person", box, 1.0) for box in frame] for frame in boxes]

    if "detection" in wanted:
        for batch in batches:
            perceiver.batch = batch
            seconds, found = best_of(
                lambda: perceiver.detect_many(pils),
                args.repeat,
                warm=lambda: perceiver.detect_many(pils[: perceiver.batch]),
            )
            note = f"{sum(len(d) for d in found)} detections"
            rows.append(
                stage_row(f"detection, batch {batch}", len(pils), "frames", seconds, note, batch=batch)
            )

    if "embedding" in wanted:
        count = sum(len(b) for b in boxes)
        for batch in batches:
            perceiver.batch = batch
            seconds, _ = best_of(
                lambda: perceiver.embed_many(pils, crops()),
                args.repeat,
                warm=lambda: perceiver.embed_many(pils[:1], crops()[:1]),
            )
            note = f"{count} crops, {count / seconds:,.0f} crops/s"
            rows.append(
                stage_row(f"embedding, batch {batch}", len(pils), "frames", seconds, note, batch=batch)
            )

    if "reid" in wanted:
        from storyreasoning.builder.faces import Sighting, link
        from storyreasoning.builder.perceive import assign

        perceiver.batch = args.batch
        features = crops()
        perceiver.embed_many(pils, features)

        def reidentify() -> None:
            for story in stories_of(features):
                assign(story)
            for story in stories_of(faces_seen):
                link([[Sighting(face.embedding) for face in frame] for frame in story])

        seconds, _ = best_of(reidentify, args.repeat)
        note = f"assign on {CROPS} crops a frame" + (", link on its faces" if faces_seen else "")
        rows.append(stage_row("re-identification", len(pils), "frames", seconds, note))

    if "segmentation" in wanted:
        from storyreasoning.builder.background import PanopticBackgrounds

        segmenter = PanopticBackgrounds(models["segmenter"], device=device)
        for batch in batches:
            segmenter.batch = batch
            seconds, found = best_of(
                lambda: segmenter.regions_many(pils),
                args.repeat,
                warm=lambda: segmenter.regions_many(pils[: segmenter.batch]),
            )
            note = f"{sum(len(r) for r in found)} stuff regions"
            rows.append(
                stage_row(f"segmentation, batch {batch}", len(pils), "frames", seconds, note, batch=batch)
            )

    if "backgrounds" in wanted:
        from storyreasoning.builder.background import ColourBackgrounds

        colours = ColourBackgrounds()
        seconds, _ = best_of(lambda: colours.regions_many(pils, boxes), args.repeat)
        rows.append(stage_row("backgrounds (colour)", len(pils), "frames", seconds, f"k={colours.clusters}"))

    if "perception" in wanted:
        from storyreasoning.builder.perceivers import make_perceiver
        from storyreasoning.builder.settings import BuildSettings

        settings = BuildSettings(
            frames=tmp / "frames", out=tmp / "unused", detector=models["detector"], embedder=models["embedder"],
            segmenter=models["segmenter"], device=device, perception_batch=args.batch,
            detector_threshold=args.detector_threshold,
        )  # fmt: skip
        whole = make_perceiver(settings)
        stories = stories_of(frames)
        seconds, _ = best_of(
            lambda: [whole.see(story) for story in stories], args.repeat, warm=lambda: whole.see(stories[0])
        )
        parts = ["detector", "embedder", "segmenter"] + (["faces"] if "faces" in whole.describe() else [])
        note = f"{' + '.join(parts)}, batch {args.batch}, from the files"
        rows.append(
            stage_row("perception, whole story", len(frames), "frames", seconds, note, batch=args.batch)
        )
    return rows


# -- the writer -----------------------------------------------------------------------------------------------


def make_stories(root: Path, count: int) -> Path:
    """``count`` two-frame stories of the examples' photographs, 200 pixels long (people in every one)."""
    from PIL import Image, ImageOps

    from storyreasoning.data.folder import frame_files

    sources = frame_files(EXAMPLES / "pioneers") + frame_files(EXAMPLES / "lighthouse")[:2]
    for k in range(count):
        folder = root / f"story{k:03d}"
        folder.mkdir(parents=True)
        for j in range(2):
            image = Image.open(sources[(k + j) % len(sources)]).convert("RGB")
            image.thumbnail((200 - 4 * (k // len(sources) % 10), 200))  # every story its own bytes
            if k // len(sources) % 2:
                image = ImageOps.mirror(image)
            image.save(folder / f"{j + 1:02d}.png")
    return root


def dataset_bytes(out: Path) -> dict[str, dict[str, bytes]]:
    return {
        story.name: {f.name: f.read_bytes() for f in sorted(story.iterdir())}
        for story in sorted(out.iterdir())
        if story.is_dir() and not story.name.startswith(".")
    }


def bench_writer(args, tmp: Path) -> tuple[list[dict], float]:
    sys.path.insert(0, str(ROOT))  # the tests' loopback server and the model that reads its prompt
    from tests.builder.reading_model import answer
    from tests.tell.servers import FakeServer

    from storyreasoning.builder.pipeline import build_dataset, find_stories
    from storyreasoning.builder.writers import ChatWriter
    from storyreasoning.tell.base import Sampling
    from storyreasoning.tell.baseline import BaselineTeller
    from storyreasoning.tell.openai import OpenAITeller

    rows: list[dict] = []
    stories, _ = find_stories(make_stories(tmp / "raw", args.stories))
    perceiver = BaselineTeller()
    began = time.perf_counter()
    for story in stories:  # perception alone: the floor under any build of these stories
        list(perceiver.see(story.frames))
    perception = time.perf_counter() - began
    reference = None
    for level in args.concurrency:
        out = tmp / f"c{level}"
        with FakeServer(respond=answer, answer_delay=args.delay) as server:
            writer = ChatWriter(OpenAITeller(server.url, retries=0), sampling=Sampling(seed=0), max_tries=2)
            began = time.perf_counter()
            report = build_dataset(
                stories, out, perceiver=perceiver, writer=writer, concurrency=level, require_person=False
            )
            seconds = time.perf_counter() - began
            peak = server.max_active
        if report.built != len(stories):
            raise SystemExit(f"concurrency {level}: {report.built} of {len(stories)} stories built")
        built = dataset_bytes(out)
        reference = reference or built
        if built != reference:
            raise SystemExit(f"concurrency {level}: the dataset differs from the first run's")
        rows.append(
            {
                "section": "writer",
                "concurrency": level,
                "stories": len(stories),
                "seconds": seconds,
                "stories_per_minute": 60 * len(stories) / seconds,
                "speedup": rows[0]["seconds"] / seconds if rows else 1.0,
                "peak_requests": peak,
            }
        )
    return rows, perception


# -- the command ----------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: 4 frames, an 8 s film, 4 stories")
    parser.add_argument("--frames", type=int, help="frames for the perception stages (20; quick 4)")
    parser.add_argument("--size", default="640x360", help="frame size WxH (640x360; quick 320x180)")
    parser.add_argument("--shot-seconds", type=float, help="seconds per shot of the film (2; quick 0.6)")
    parser.add_argument("--batch", type=int, default=8, help="images per forward in the batched rows (8)")
    parser.add_argument("--repeat", type=int, help="timed runs per stage, best kept (3; quick 1)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--detector", help="an object detector folder or cached hub id (default: a tiny one)")
    parser.add_argument("--embedder", help="an appearance embedder (default: a tiny ViT)")
    parser.add_argument("--segmenter", help="a panoptic segmenter (default: a tiny Mask2Former)")
    parser.add_argument("--device", help="cpu, cuda, auto (default: cpu for the tiny models, else auto)")
    parser.add_argument(
        "--detector-threshold", type=float, help="lowest detection score (0.7; 0 for the tiny detector)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch's CPU threads (default: torch's own, one per core); 1 on a busy machine",
    )
    parser.add_argument("--stories", type=int, help="writer: two-frame stories (16; quick 4)")
    parser.add_argument("--delay", type=float, help="writer: seconds each answer waits (1; quick 0.05)")
    parser.add_argument(
        "--concurrency", help="writer: comma-separated stories in flight (1,2,4,8; quick 1,2)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else small if quick else full

    args.frames = pick(args.frames, 20, 4)
    if args.detector_threshold is None:  # the tiny detector's scores are random: everything it finds counts
        args.detector_threshold = 0.7 if args.detector else 0.0
    args.shot_seconds = pick(args.shot_seconds, 2.0, 0.6)  # a shot is at least --min-shot (0.5 s) long
    args.repeat = pick(args.repeat, 3, 1)
    args.stories = pick(args.stories, 16, 4)
    args.delay = pick(args.delay, 1.0, 0.05)
    args.concurrency = [int(v) for v in pick(args.concurrency, "1,2,4,8", "1,2").split(",")]
    if quick and args.size == "640x360":
        args.size = "320x180"
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, not {args.size!r}")
    args.size = (width, height)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {', '.join(unknown)}; choose among {', '.join(STAGES)}")
    if args.frames < 1 or args.batch < 1 or args.repeat < 1 or args.stories < 1:
        parser.error("--frames, --batch, --repeat and --stories must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tiny models are built here; real ones come from folders
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))  # the tables' notes stay on one line in a pipe
    threads = None
    if args.threads is not None or set(args.stages) - {"writer"}:
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" for every model, on stderr
        threads = torch.get_num_threads()

    def say(line: str) -> None:
        console.print(f"[dim]{line}[/dim]")

    rows: list[dict] = []
    writer_rows: list[dict] = []
    perception_floor = None
    real = {k: getattr(args, k) for k in ("detector", "embedder", "segmenter") if getattr(args, k)}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        perception_stages = set(args.stages) - {"writer"}
        if perception_stages:
            models_needed = perception_stages & {
                "detection",
                "segmentation",
                "embedding",
                "reid",
                "perception",
            }
            args.models = {**(tiny_models(Path(tmp) / "models") if models_needed else {}), **real}
            from storyreasoning.models import choose_device

            args.device = choose_device(args.device or ("auto" if real else "cpu"))
            shown = ", ".join(f"{k} {real.get(k, 'tiny')}" for k in ("detector", "embedder", "segmenter"))
            say(f"models: {shown}; device {args.device}; torch threads {threads}")
            rows = bench_perception(args, Path(tmp), say)
        if "writer" in args.stages:
            writer_rows, perception_floor = bench_writer(args, Path(tmp))

    if rows:
        table = Table(
            title=f"Perception, {args.frames} frames of {args.size[0]}x{args.size[1]} (best of {args.repeat})"
        )
        for name in ("stage", "items", "seconds", "per second", "ms each", "note"):
            table.add_column(name, justify="left" if name in ("stage", "note") else "right")
        for row in rows:
            table.add_row(
                row["stage"], f"{row['items']} {row['unit']}", f"{row['seconds']:.3f}",
                f"{row['per_second']:,.1f}", f"{row['ms_each']:.1f}", row["note"],
            )  # fmt: skip
        console.print(table)
    if writer_rows:
        table = Table(title=f"Chat writer, {args.stories} stories, answers after {args.delay:g} s")
        for name in ("concurrency", "seconds", "stories/min", "speed-up", "peak requests"):
            table.add_column(name, justify="right")
        for row in writer_rows:
            table.add_row(
                str(row["concurrency"]), f"{row['seconds']:.2f}", f"{row['stories_per_minute']:.1f}",
                f"{row['speedup']:.2f}x", str(row["peak_requests"]),
            )  # fmt: skip
        console.print(table)
        print(
            f"perception alone: {perception_floor:.2f} s for {args.stories} stories (a floor under every row)"
        )

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import write_results

    write_results(
        args.out,
        "build",
        rows + writer_rows,
        argv,
        frames=args.frames,
        size=list(args.size),
        batch=args.batch,
        repeat=args.repeat,
        device=getattr(args, "device", None),
        models={k: real.get(k, "tiny, built offline") for k in ("detector", "embedder", "segmenter")},
        torch_threads=threads,
        stories=args.stories,
        delay=args.delay,
        perception_seconds=perception_floor,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
