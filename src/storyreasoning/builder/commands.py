"""What ``storyreasoning build`` does (the CLI in :mod:`storyreasoning.cli` only parses options)."""

from __future__ import annotations

import json
from pathlib import Path


def build(
    frames: Path,
    out: Path,
    *,
    writer: str,
    endpoint: str | None,
    api_key: str | None,
    served_model: str | None,
    timeout: float,
    sampling,
    max_tries: int,
    min_frames: int,
    max_frames: int | None,
    limit: int | None,
    keep_invalid: bool,
    detector: str | None = None,
    embedder: str | None = None,
    detector_threshold: float = 0.7,
    reid_threshold: float = 0.85,
    device: str = "auto",
    frames_per_story: int = 5,
    cut_threshold: float = 0.35,
) -> int:
    from rich.console import Console

    from ..data.commands import progress_bar
    from ..errors import UsageError
    from ..tell.baseline import BaselineTeller
    from .pipeline import ERRORS, build_dataset, check_resume, find_stories
    from .writers import ChatWriter, TemplateWriter

    err = Console(stderr=True, highlight=False)
    if writer == "chat" and not endpoint:
        raise UsageError(
            "--writer chat needs --endpoint URL (an OpenAI-compatible server: vLLM, transformers serve)"
        )
    if writer == "template" and endpoint:
        raise UsageError("--endpoint is for --writer chat; the template writer needs no server")
    stories, notes = find_stories(
        frames,
        min_frames=min_frames,
        max_frames=max_frames,
        frames_dir=out / ".frames",
        frames_per_story=frames_per_story,
        cut_threshold=cut_threshold,
    )
    if limit is not None:
        stories = stories[:limit]
    for note in notes:
        err.print(f"[dim]{note}[/dim]")
    check_resume(out, writer)  # before a chat writer contacts its server
    if embedder and not detector:
        raise UsageError("--embedder re-identifies a detector's detections; give --detector too")
    if detector:
        from .perceive import ModelPerceiver

        perceiver = ModelPerceiver(
            detector,
            embedder=embedder,
            threshold=detector_threshold,
            reid_threshold=reid_threshold,
            device=device,
        )
    else:
        perceiver = BaselineTeller()
    if writer == "chat":
        from ..tell.openai import OpenAITeller

        client = OpenAITeller(endpoint, api_key=api_key, model=served_model, timeout=timeout)
        chosen = ChatWriter(client, sampling=sampling, max_tries=max_tries)
    else:
        chosen = TemplateWriter()
    settings = {
        "frames": str(frames),
        "min_frames": min_frames,
        "max_frames": max_frames,
        "keep_invalid": keep_invalid,
        "frames_per_story": frames_per_story,
        "cut_threshold": cut_threshold,
        "detector": detector,
        "embedder": embedder,
    }
    with progress_bar(len(stories), "building stories") as advance:
        report = build_dataset(
            stories,
            out,
            perceiver=perceiver,
            writer=chosen,
            keep_invalid=keep_invalid,
            settings=settings,
            progress=advance,
            say=lambda line: err.print(f"[yellow]{line}[/yellow]"),
        )
    err.print(
        f"built {report.built} stories into {out}"
        + (f" ({report.skipped_done} already there)" if report.skipped_done else "")
        + (f"; {report.invalid_kept} kept although not well-structured" if report.invalid_kept else "")
        + (f"; {len(report.failed)} failed, see {out / ERRORS}" if report.failed else "")
    )
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return 1 if report.failed else 0
