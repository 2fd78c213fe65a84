"""Publishing to the Hugging Face Hub: a dataset as StoryReasoning parquet with its card, and the upload itself.

``storyreasoning data push DATASET REPO_ID`` (and ``build --push-to-hub REPO_ID``) writes
the dataset in the published layout of ``daniel3303/StoryReasoning``, one set of shards per
split (``data/{split}-NNNNN-of-MMMMM.parquet``: ``story_id``, ``images``, ``frame_count``,
``chain_of_thought``, ``story``, plus ``frame_meta``), puts the dataset card beside them
as ``README.md``, reads the shards back through our own loader to check that every story
is there, and uploads the folder with huggingface_hub (``create_repo``, then
``upload_folder`` in one commit, removing shards of an earlier push that this one does not
replace). Story-level metadata of a story folder (``meta.json`` other than ``frames``) has
no column in the published layout and stays behind.

:func:`upload_folder` is the one upload both this and ``train push`` use: the Hub's
refusals (offline mode, no or a wrong token, no network) become one line naming the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoryReasoningError, UsageError
from ..files import write_text_atomic
from ..settings import argument, option
from .card import CARD, CARD_MARKER, CITATION_STORYREASONING, REPO_PLACEHOLDER

if TYPE_CHECKING:  # pragma: no cover
    from .sources import StoryDataset

_NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3", "aiohttp")


@dataclass(frozen=True, kw_only=True)
class DataPushSettings:
    """Upload a dataset to the Hugging Face Hub as StoryReasoning parquet shards with its dataset card."""

    source: str = argument(
        help="A dataset: a folder of story folders (storyreasoning build wrote it), parquet files, a "
        "save_to_disk folder or a hub id."
    )
    repo_id: str = argument(help="The Hub dataset repository, owner/name (created when missing).")
    private: bool = option(False, help="Create the repository private.")
    out: Path | None = option(
        None, "--out", "-o", help="Write the upload folder (shards and card) here and keep it (a new or empty "
        "folder); default: a temporary folder."
    )  # fmt: skip
    dry_run: bool = option(
        False, help="Write the upload folder and list its files; nothing leaves the machine."
    )
    card: Path | None = option(
        None, help="Upload this README.md as the dataset card (default: the dataset folder's own card, else a "
        "generated one)."
    )  # fmt: skip
    stories_per_shard: int = option(256, min=1, help="Stories per parquet shard.")
    commit_message: str | None = option(None, help="Commit message (default: says what was pushed).")
    token: str | None = option(
        None, secret=True, show_default=False, help="Hub token with write access (default: HF_TOKEN or the "
        "saved login)."
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_repo_id(self.repo_id)


def check_repo_id(repo_id: str) -> str:
    """``owner/name``, or one clear error."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo_id or ""):
        raise UsageError(f"the repository {repo_id!r} must be owner/name, e.g. you/my-stories")
    return repo_id


def require_hub():
    """huggingface_hub's ``HfApi``, or one clear error naming the extra that installs it."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise UsageError(
            "pushing to the Hub needs huggingface_hub: pip install 'storyreasoning[data]'"
        ) from None
    return HfApi


def check_can_push(repo_id: str, token: str | None = None) -> None:
    """Before any work: the Hub is not switched off (``HF_HUB_OFFLINE``) and there is a token to push with."""
    require_hub()
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise StoryReasoningError(
            f"HF_HUB_OFFLINE is set, so nothing can be pushed to {repo_id}; unset it, or write what would "
            "go up with --dry-run --out FOLDER"
        )
    if not (token or get_token()):
        raise StoryReasoningError(
            f"no Hugging Face token to push {repo_id} with: set HF_TOKEN, pass --token, or log in with "
            "hf auth login"
        )


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    repo_type: str = "dataset",
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    message: str,
    delete_patterns: list[str] | None = None,
    offline_fix: str = "",
) -> str:
    """Create ``repo_id`` when missing (and the branch ``revision``) and upload ``folder`` in one commit.

    Returns the commit URL. The Hub's refusals are one line each: offline mode (with
    ``offline_fix`` appended to its advice), no token, a refused token (401/403), no network.
    """
    HfApi = require_hub()
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type=repo_type, revision=revision,
                                   commit_message=message, ignore_patterns=["*.tmp"],
                                   delete_patterns=delete_patterns)  # fmt: skip
    except OfflineModeIsEnabled:
        raise StoryReasoningError(
            f"HF_HUB_OFFLINE is set, so nothing can be pushed; unset it{offline_fix}"
        ) from None
    except LocalTokenNotFoundError:
        raise StoryReasoningError("no Hub token: log in with hf auth login, or set HF_TOKEN") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = {401: "the token is missing or invalid (hf auth login, or HF_TOKEN)",
               403: f"the token may not write to {repo_id}"}.get(status, str(exc).splitlines()[0][:200])  # fmt: skip
        raise StoryReasoningError(f"the Hub refused the push to {repo_id}: {why}") from None
    except OSError as exc:  # no network, DNS, refused connection
        raise StoryReasoningError(
            f"cannot reach the Hub ({type(exc).__name__}: {exc}); check the network"
        ) from None
    except Exception as exc:  # the HTTP client's transport errors: one line, not a traceback
        if not type(exc).__module__.startswith(_NETWORK_MODULES):
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise StoryReasoningError(
            f"cannot reach the Hub ({type(exc).__name__}{': ' + reason if reason else ''}); check the network "
            "(and HF_ENDPOINT if it is set)"
        ) from None
    return getattr(commit, "commit_url", None) or str(commit)


# -- the upload folder ------------------------------------------------------------------------------


def source_card(source: str) -> Path | None:
    """The dataset card a local dataset folder holds (a ``README.md`` with YAML front matter), else None."""
    path = Path(source).expanduser()
    card = path / CARD if path.is_dir() else None
    if card is None or not card.is_file():
        return None
    try:
        head = card.read_text(encoding="utf-8")[:4]
    except (OSError, UnicodeDecodeError):
        return None
    return card if head.startswith("---") else None


def stage(
    splits: Mapping[str, StoryDataset],
    out: Path,
    *,
    card: str | None = None,
    stories_per_shard: int = 256,
    progress: Callable[[int], None] | None = None,
    source: str | Path | None = None,
    repo_id: str | None = None,
) -> dict[str, int]:
    """Write ``splits`` (``name -> stories``) into ``out`` as the published parquet layout, with ``card`` as
    ``README.md`` (None: the card :func:`~storyreasoning.data.card.write_parquet_card` generates from the
    shards and the build record of ``source``, naming ``repo_id``); then read the shards back through
    :func:`~storyreasoning.data.load_stories` and check that every story is there.

    ``out`` must be new or empty (shards of another dataset must not go up with these). Returns
    ``split -> stories``.
    """
    from .card import write_parquet_card
    from .resume import RECORD
    from .sources import load_stories
    from .writers import check_output_folder, write_parquet

    out = check_output_folder(out, empty=True)
    for name, stories in splits.items():
        write_parquet(stories, out, split=name, stories_per_shard=stories_per_shard, progress=progress)
    target = out / CARD
    if card is None:
        write_parquet_card(out, command="data push", source=source, repo_id=repo_id)
    else:
        write_text_atomic(target, card if card.endswith("\n") else card + "\n")
    for name, stories in splits.items():  # the round trip: every story of every split reads back, in order
        back = load_stories(out, name).ids() if len(stories) else []
        if back != stories.ids():
            raise StoryReasoningError(
                f"the shards written to {out} do not read back as the split {name} ({len(back)} stories "
                f"instead of {len(stories)}); nothing was uploaded"
            )
    (out / RECORD).unlink(missing_ok=True)  # what the shards were made from is for resuming, not the Hub
    return {name: len(stories) for name, stories in splits.items()}


def upload_files(folder: Path) -> list[tuple[str, int]]:
    """``(relative path, bytes)`` of every file :func:`upload_folder` sends from ``folder``, in order."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and p.suffix != ".tmp":
            out.append((rel.as_posix(), p.stat().st_size))
    return out


def publish(
    splits: Mapping[str, StoryDataset],
    repo_id: str,
    *,
    card: str | None,
    out: Path | None = None,
    dry_run: bool = False,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    stories_per_shard: int = 256,
    what: str = "dataset",
    say: Callable[[str], None] = lambda line: None,
    progress: Callable[[int], None] | None = None,
    source: str | Path | None = None,
) -> str | None:
    """Stage ``splits`` with ``card`` (in ``out``, or a temporary folder; None: a card generated from the
    shards and the build record of ``source``) and upload it to ``repo_id``.

    With ``dry_run``, list the files that would go up (``path<TAB>bytes`` on stdout) and upload
    nothing. Without it, the Hub and the token are checked before any shard is written.
    Returns the commit URL (None for a dry run).
    """
    import sys
    import tempfile

    check_repo_id(repo_id)
    if not dry_run:
        check_can_push(repo_id, token)
    with tempfile.TemporaryDirectory(prefix="storyreasoning-push-") as scratch:
        folder = Path(out) if out is not None else Path(scratch) / "upload"
        counts = stage(
            splits,
            folder,
            card=card,
            stories_per_shard=stories_per_shard,
            progress=progress,
            source=source,
            repo_id=repo_id,
        )
        listing = ", ".join(f"{name} {n}" for name, n in counts.items())
        if dry_run:
            say(f"dry run: {folder} holds what would go to {repo_id} ({listing} stories):")
            for rel, size in upload_files(folder):
                sys.stdout.write(f"{rel}\t{size}\n")
            return None
        say(f"pushing {what} ({listing} stories) to {repo_id}" + (", private" if private else ""))
        return upload_folder(
            folder,
            repo_id,
            repo_type="dataset",
            private=private,
            token=token,
            message=commit_message or f"Upload {what} with storyreasoning ({listing} stories)",
            delete_patterns=["data/*.parquet"],
            offline_fix=", or use --dry-run --out FOLDER to see what would go up",
        )


__all__ = [
    "CARD",
    "CARD_MARKER",
    "CITATION_STORYREASONING",
    "REPO_PLACEHOLDER",
    "DataPushSettings",
    "check_can_push",
    "check_repo_id",
    "publish",
    "require_hub",
    "source_card",
    "stage",
    "upload_files",
    "upload_folder",
]
