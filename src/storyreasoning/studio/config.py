"""What the studio server is told: the storyteller, the datasets, the runs folder and the limits."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..format.prompts import DEFAULT_PROMPT
from ..tell.base import Sampling
from ..tell.settings import TellerOptions

MIB = 1024 * 1024
STATIC_DIR = Path(__file__).parent / "static"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")

# A dataset or run name: what the page sends back in URLs (never a path).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# What load_stories reads as a Hugging Face Hub id when no such local path exists.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SOURCE_FIX = "give a dataset folder, a parquet file or a hub id such as daniel3303/StoryReasoning"


@dataclass(frozen=True)
class DatasetSource:
    """A dataset the studio offers: its name in URLs and where :func:`~storyreasoning.data.load_stories` finds it."""

    name: str
    source: str


@dataclass
class StudioConfig:
    """Everything :func:`storyreasoning.studio.app.create_app` needs.

    ``teller`` None: no storyteller (inspect and browse only). ``max_upload_bytes`` bounds
    the uploads kept in memory (the oldest are dropped beyond it). ``max_jobs`` is how
    many stories may be told at once; finished jobs are kept ``job_ttl`` seconds so a
    page that connects late still gets every event. A story no page has read for
    ``job_grace`` seconds (its tab was closed) is cancelled, so it frees its place.
    """

    teller: TellerOptions | None = None
    datasets: list[DatasetSource] = field(default_factory=list)
    runs: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    max_images: int = 20
    max_image_bytes: int = 20 * MIB
    max_upload_bytes: int = 512 * MIB
    max_pixels: int = 64_000_000  # per image: a decompression bomb is refused before decoding
    max_body_bytes: int = 16 * MIB  # JSON requests (a pasted output)
    max_jobs: int = 4
    job_ttl: float = 600.0
    job_grace: float = 30.0
    sampling: Sampling = field(default_factory=Sampling)
    prompt: str = DEFAULT_PROMPT
    static_dir: Path = STATIC_DIR

    def __post_init__(self) -> None:
        if self.max_images < 1:
            raise UsageError(f"--max-images must be at least 1, got {self.max_images}")
        if self.max_image_bytes < 1024:
            raise UsageError(f"the upload limit must be at least 1 KiB, got {self.max_image_bytes} bytes")
        if self.max_jobs < 1:
            raise UsageError(f"max jobs must be at least 1, got {self.max_jobs}")
        if not self.job_grace > 0:
            raise UsageError(f"the grace of an unread job must be more than 0 seconds, got {self.job_grace}")
        self.max_upload_bytes = max(self.max_upload_bytes, self.max_image_bytes * self.max_images)
        names = [d.name for d in self.datasets]
        for name in names:
            if not NAME.match(name):
                raise UsageError(
                    f"dataset name {name!r} is not a plain name; use letters, digits, '.', '_' and '-' "
                    "(--dataset NAME=SOURCE)"
                )
        for dataset in self.datasets:
            check_source(dataset.source)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(
                f"two datasets are named {', '.join(twice)}; name them apart with --dataset NAME=SOURCE"
            )
        if self.runs is not None:
            self.runs = Path(self.runs).expanduser()
            if not self.runs.is_dir():
                raise UsageError(
                    f"--runs {self.runs} is not a folder; give the folder that holds tell-dataset run folders"
                )

    @property
    def loopback(self) -> bool:
        """Whether the server listens on this machine only."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` and ``::1``; an empty host or ``0.0.0.0`` listens everywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_local(source: str) -> bool:
    """Whether ``source`` names a local file or folder (that exists) rather than a hub id."""
    try:
        return Path(source).expanduser().exists()
    except OSError:  # a name too long for the file system, or not allowed in it
        return False


def check_source(source: str) -> None:
    """Refuse a ``--dataset`` source that is neither a local path that exists nor a hub id.

    ``owner/name`` is taken for a hub id (opened when first browsed), unless ``owner`` is a
    local folder: then it is a path with a typo, and refused here rather than in the page.
    """
    if is_local(source):
        return
    hub = HUB_ID.match(source) and not source.startswith((".", "/", "~"))
    if hub and not is_local(source.split("/", 1)[0]):
        return
    raise UsageError(f"--dataset {source}: no such file or folder; {SOURCE_FIX}")


def derived_name(source: str) -> str:
    """A dataset's name from its source: the folder's or file's name, or the hub repo's."""
    path = Path(source).expanduser()
    if path.exists():
        base = path.resolve().name if path.is_dir() else path.stem
    else:  # a hub id: owner/name
        base = source.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")
    return name[:100] or "dataset"


def parse_datasets(specs: list[str] | tuple[str, ...]) -> list[DatasetSource]:
    """``--dataset`` values: ``SOURCE`` (named after its folder, file or hub repo) or ``NAME=SOURCE``."""
    out = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            raise UsageError("--dataset is empty; give a dataset folder, parquet file or hub id")
        name, sep, rest = spec.partition("=")
        if sep and NAME.match(name) and rest.strip():
            out.append(DatasetSource(name, rest.strip()))
        else:
            out.append(DatasetSource(derived_name(spec), spec))
    return out
