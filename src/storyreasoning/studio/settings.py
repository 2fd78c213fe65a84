"""The settings of ``storyreasoning studio``: the storyteller group plus what the studio serves and where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..settings import option
from ..tell.settings import SOURCE_HELP, TellerOptions


@dataclass(frozen=True, kw_only=True)
class StudioSettings(TellerOptions):
    """Web studio: tell a story from uploaded images (streamed), inspect outputs, browse datasets and runs."""

    datasets: tuple[str, ...] = option(
        (),
        "--dataset",
        "-d",
        help="A dataset to browse, as SOURCE or NAME=SOURCE (repeat for more). " + SOURCE_HELP,
    )
    runs: Path | None = option(
        None, help="A folder of tell-dataset run folders (with their eval/ reports) to browse and compare."
    )
    host: str = option(
        "127.0.0.1", help="Address to listen on; anything but loopback lets other machines in."
    )
    port: int = option(8765, min=0, max=65535, help="Port to listen on (0: any free port).")
    max_images: int = option(20, min=1, help="Most images per story.")
    max_upload_mb: float = option(20.0, min=0.001, help="Largest image upload, in MB (0.001: 1 KiB).")
    open_browser: bool = option(False, "--open", help="Open the studio in a web browser.")

    def teller_options(self) -> TellerOptions | None:
        """The storyteller group, or None when no storyteller is named (inspect and browse only)."""
        if not (self.endpoint or self.model or self.teller):
            return None
        import dataclasses

        return TellerOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TellerOptions)})


__all__ = ["StudioSettings"]
