"""What a build does once its stories are written: the split, the dataset card, the upload.

:func:`check_publishing` runs before the build (a push that cannot happen is said before
hours of work); :func:`finish_build` after it, on every run, resumed ones included:

1. ``--split FRACTION`` writes ``splits.json`` from every story folder now in the dataset
   (:func:`storyreasoning.data.splits.split_folder_dataset`: by identity group, stable as the
   dataset grows); without ``--split``, a ``splits.json`` of an earlier run is removed, so
   the folder is as the last command asked;
2. the dataset card ``README.md`` is written afresh (:mod:`storyreasoning.data.card`);
3. ``--push-to-hub REPO_ID`` uploads the dataset as StoryReasoning parquet with that card
   (:func:`storyreasoning.data.hub.publish`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def check_publishing(settings: Any) -> None:
    """Before the build: a ``--push-to-hub`` has the Hub and a token (one clear line otherwise)."""
    if settings.push_to_hub:
        from ..data.hub import check_can_push

        check_can_push(settings.push_to_hub, settings.token)


def finish_build(settings: Any, out: Path, *, say: Callable[[str], None] = lambda line: None) -> str | None:
    """Split, card, push (see the module doc); returns the push's commit URL, or None."""
    from ..data.card import write_dataset_card
    from ..data.splits import SPLITS_FILE, TEST, TRAIN, split_folder_dataset

    out = Path(out)
    if settings.split is not None:
        assigned = split_folder_dataset(out, settings.split)
        counts = {name: sum(1 for v in assigned.values() if v == name) for name in (TRAIN, TEST)}
        say(
            f"split {settings.split}: {counts[TRAIN]} stories train, {counts[TEST]} test ({out / SPLITS_FILE})"
        )
        empty = [name for name, n in counts.items() if n == 0]
        if empty and assigned:
            say(
                f"the {empty[0]} split is empty: a video's or folder's stories go to one split by the hash of its "
                "name, so with few of them the shares can differ from the fraction (see the README)"
            )
    elif (out / SPLITS_FILE).is_file():
        (out / SPLITS_FILE).unlink()
        say(
            f"no --split: the splits of an earlier run ({SPLITS_FILE}) are removed; pass --split to keep them"
        )
    card = write_dataset_card(out, repo_id=settings.push_to_hub)
    if card is None:
        say(f"{out / 'README.md'} is a card storyreasoning did not write: left as it is")
    if not settings.push_to_hub:
        return None
    from ..data.hub import publish
    from ..data.sources import ConcatStories, load_stories
    from ..terminal import progress_bar

    loaded = load_stories(out)
    parts = loaded._parts if isinstance(loaded, ConcatStories) else [loaded]
    splits = {(p.split or TRAIN): p for p in parts}
    text = (out / "README.md").read_text(encoding="utf-8")
    with progress_bar(len(loaded), "writing parquet") as advance:
        url = publish(
            splits,
            settings.push_to_hub,
            card=text,
            private=settings.private,
            token=settings.token,
            what=out.resolve().name,
            say=say,
            progress=advance,
        )
    say(f"pushed {out} to {settings.push_to_hub}: {url}")
    return url


__all__ = ["check_publishing", "finish_build"]
