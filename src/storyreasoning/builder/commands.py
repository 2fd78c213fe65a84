"""What ``storyreasoning build`` does (the CLI in :mod:`storyreasoning.cli` only parses options)."""

from __future__ import annotations

import json

from .settings import BuildSettings


def video_options(s: BuildSettings):
    """How the build's videos become stories (shots, key frames, scenes): see builder/video.py."""
    from .video import VideoOptions

    return VideoOptions(
        frames_per_story=s.frames_per_story,
        shot_threshold=s.shot_threshold,
        min_shot=s.min_shot,
        key_frame=s.key_frame,
        scenes=s.scenes,
        scene_threshold=s.scene_threshold,
        faces=s.faces,
        face_threshold=s.face_threshold,
        face_detector=s.face_detector,
        face_upsample=s.face_upsample,
        face_max_side=s.face_max_side,
    )


def build(settings: BuildSettings) -> int:
    from rich.console import Console

    from ..settings import record, write_record
    from ..tell.baseline import BaselineTeller
    from ..terminal import progress_bar
    from .pipeline import ERRORS, build_dataset, check_resume, find_stories
    from .publish import check_publishing, finish_build
    from .writers import ChatWriter, TemplateWriter

    s = settings
    out, writer = s.out, s.writer
    err = Console(stderr=True, highlight=False)
    stories, notes = find_stories(
        s.frames,
        min_frames=s.min_frames,
        max_frames=s.max_frames,
        frames_dir=out / ".frames",
        video=video_options(s),
    )
    if s.limit is not None:
        stories = stories[: s.limit]
    for note in notes:
        err.print(f"[dim]{note}[/dim]")
    check_resume(out, writer)  # before a chat writer contacts its server
    check_publishing(s)  # a --push-to-hub without the Hub or a token: said before the build
    if s.detector:
        from .perceive import ModelPerceiver

        perceiver = ModelPerceiver(
            s.detector,
            embedder=s.embedder,
            threshold=s.detector_threshold,
            reid_threshold=s.reid_threshold,
            device=s.device,
        )
    else:
        perceiver = BaselineTeller()
    # faces: auto when dlib is installed; dlib required (one line naming the extra when missing); none
    if s.faces != "none":
        from .faces import with_faces

        perceiver = with_faces(
            perceiver,
            backend=s.faces,
            detector=s.face_detector,
            threshold=s.face_threshold,
            upsample=s.face_upsample,
            max_side=s.face_max_side,
        )
    if writer == "chat":
        from ..tell.commands import endpoint_teller

        client = endpoint_teller(s)
        chosen = ChatWriter(client, sampling=s.as_sampling(), max_tries=s.max_tries)
    else:
        chosen = TemplateWriter()
    with progress_bar(len(stories), "building stories") as advance:
        report = build_dataset(
            stories,
            out,
            perceiver=perceiver,
            writer=chosen,
            keep_invalid=s.keep_invalid,
            settings=record(s),
            progress=advance,
            say=lambda line: err.print(f"[yellow]{line}[/yellow]"),
        )
    err.print(
        f"built {report.built} stories into {out}"
        + (f" ({report.skipped_done} already there)" if report.skipped_done else "")
        + (f"; {report.invalid_kept} kept although not well-structured" if report.invalid_kept else "")
        + (f"; {len(report.failed)} failed, see {out / ERRORS}" if report.failed else "")
    )
    write_record(s, out / "settings.json")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    # the split (--split), the dataset card README.md, and --push-to-hub: see builder/publish.py
    finish_build(s, out, say=lambda line: err.print(f"[dim]{line}[/dim]"))
    return 1 if report.failed else 0
