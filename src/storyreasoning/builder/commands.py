"""What ``storyreasoning build`` does (the CLI in :mod:`storyreasoning.cli` only parses options)."""

from __future__ import annotations

from ..files import write_json_atomic
from .perceivers import make_perceiver  # the build's perceiver, here and on every Ray worker
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
    from ..errors import UsageError
    from ..files import lock_folder

    out = settings.out
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"--out {out} is a file; build writes a dataset folder there, give a folder (new, or a build to resume)"
        )
    # the one build writing to --out, from the first check to the card
    with lock_folder(out, refuse=UsageError):
        return _build(settings)


def _build(settings: BuildSettings) -> int:
    from rich.console import Console

    from ..errors import Interrupted
    from ..settings import check_record, data_record, write_record
    from ..terminal import progress_bar
    from .pipeline import ERRORS, SKIPPED, build_dataset, check_resume, find_stories
    from .publish import check_publishing, finish_build
    from .writers import ChatWriter, TemplateWriter

    s = settings
    out, writer = s.out, s.writer
    err = Console(stderr=True, highlight=False)
    # before videos are cut and a chat writer contacts its server: a resume with other settings is refused
    check_resume(out, {"settings": data_record(s)}, allow_mixed=s.allow_mixed)
    check_record(type(s), out / "settings.json")  # another job's folder (a training's): not written over
    disconnect = None
    if s.ray:  # perception in Ray actors, each making the perceiver itself (builder/distributed.py)
        from .distributed import RayPerception, connect

        disconnect = connect(s.ray)
    try:
        if s.ray:  # before any video is cut, as a local build checks --device (settings.py)
            perceiver = RayPerception(s, workers=s.ray_workers, gpus_per_worker=s.ray_gpus_per_worker)
            err.print(f"[dim]{perceiver.summary()}[/dim]")
            # a worker makes the perceiver to describe it (build.json): --device is checked there, on the
            # GPUs Ray gives a worker (the driver's own may be none)
            perceiver.describe()
        stories, notes = find_stories(
            s.frames,
            min_frames=s.min_frames,
            max_frames=s.max_frames,
            frames_dir=out / ".frames",
            video=video_options(s),
            limit=s.limit,  # reading stops there: no video after the first --limit stories is cut
            out=out,  # key frames an earlier version cut otherwise are cut again while none is built
        )
        for note in notes:
            err.print(f"[dim]{note}[/dim]")
        check_publishing(s)  # a --push-to-hub without the Hub or a token: said before the build
        if not s.ray:
            perceiver = make_perceiver(s)
        if writer == "chat":
            from ..tell.commands import endpoint_teller

            client = endpoint_teller(s, concurrency=s.stories_at_once)
            chosen = ChatWriter(
                client, sampling=s.as_sampling(), max_tries=s.max_tries, keep_invalid=s.keep_invalid
            )
        else:
            chosen = TemplateWriter()
        with progress_bar(len(stories), "building stories") as advance:
            report = build_dataset(
                stories,
                out,
                perceiver=perceiver,
                writer=chosen,
                keep_invalid=s.keep_invalid,
                require_person=s.require_person,
                concurrency=s.stories_at_once,
                allow_mixed=s.allow_mixed,
                settings=data_record(s),
                progress=advance,
                say=lambda line: err.print(f"[yellow]{line}[/yellow]"),
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; the finished stories are kept in {out}, run the same command again to continue"
        ) from None
    finally:
        if disconnect is not None:
            disconnect()  # a local Ray this build started is shut down; a cluster's is left running
    err.print(
        f"built {report.built} {'story' if report.built == 1 else 'stories'} into {out}"
        + (f" ({report.skipped_done} already there)" if report.skipped_done else "")
        + (
            f"; {report.skipped_no_person} skipped with no person in view, see {out / SKIPPED}"
            if report.skipped_no_person
            else ""
        )
        + (f"; {report.invalid_kept} kept although not well-structured" if report.invalid_kept else "")
        + (f"; {len(report.failed)} failed, see {out / ERRORS}" if report.failed else "")
    )
    write_record(s, out / "settings.json")
    write_json_atomic(out / "report.json", report.to_dict(), ensure_ascii=True)
    # the split (--split), the dataset card README.md, and --push-to-hub: see builder/publish.py
    finish_build(s, out, say=lambda line: err.print(f"[dim]{line}[/dim]"))
    return 1 if report.failed else 0
