"""What ``storyreasoning studio`` does (the CLI only parses options)."""

from __future__ import annotations

import threading
import time

from ..errors import UsageError
from .config import MIB, StudioConfig, is_loopback, parse_datasets
from .settings import StudioSettings


def studio(settings: StudioSettings) -> int:
    """Serve the studio until Ctrl-C: print its URL, warn when it is reachable from other machines."""
    from rich.console import Console

    max_upload_mb, port, host = settings.max_upload_mb, settings.port, settings.host
    err = Console(stderr=True, highlight=False)
    if not max_upload_mb * MIB >= 1024:  # StudioConfig's least per-image limit, 1 KiB
        raise UsageError(f"--max-upload-mb must be at least 0.001 (1 KiB), got {max_upload_mb:g}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    options = settings.teller_options()
    config = StudioConfig(
        teller=options,
        datasets=parse_datasets(list(settings.datasets)),
        runs=settings.runs,
        host=host,
        port=port,
        max_images=settings.max_images,
        max_image_bytes=int(max_upload_mb * MIB),
    )
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError(
            "the studio needs FastAPI, uvicorn and python-multipart: pip install 'storyreasoning[studio]'"
        ) from None
    from .catalog import Datasets, Runs
    from .server import bind, url_of, uvicorn_server

    datasets = Datasets(config.datasets)
    datasets.open_local()  # a dataset it cannot read stops it here, not in the page
    runs = Runs(config.runs)
    for line in unshown_datasets(runs, datasets) + unnamed_runs(runs):
        err.print(line, style="dim", markup=False)
    sock = bind(host, port)  # a busy port fails here, before a model loads
    try:
        from ..tell.base import teller_label
        from .app import create_app

        if options is not None:
            err.print("[dim]starting the storyteller…[/dim]")
        app = create_app(config, datasets=datasets)
        url = url_of(sock) + "/"
        if app.state.teller is not None:
            err.print(f"storyteller: {teller_label(app.state.teller)}")
        else:
            err.print(
                "[dim]no storyteller: inspect and browse only (give --teller baseline, --endpoint URL or "
                "--model MODEL to generate)[/dim]"
            )
        if not is_loopback(host):
            err.print(
                f"[bold yellow]warning:[/bold yellow] the studio listens on {host}, so other machines can reach "
                "it and use its storyteller (and any API key it holds); use --host 127.0.0.1 unless that is "
                "what you want"
            )
        err.print(f"studio at [bold]{url}[/bold] (Ctrl-C stops it)")
        server = uvicorn_server(app, log_level="warning")
        if settings.open_browser:
            threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def unnamed_runs(runs) -> list[str]:
    """A line for the run folders the studio leaves out for their names, saying the rule and the fix."""
    names = ["".join(c for c in name if c.isprintable())[:100] for name in runs.unnamed()]
    if not names:
        return []
    shown = ", ".join(repr(n) for n in names[:3]) + (" …" if len(names) > 3 else "")
    return [
        f"not shown: run folder{'s' if len(names) > 1 else ''} {shown}; a run's folder name is letters, "
        "digits, '.', '_' and '-' (first a letter or digit, at most 100): rename it to see it"
    ]


def unshown_datasets(runs, datasets) -> list[str]:
    """A line for each dataset that runs were told from and the studio was not given (no frames for them)."""
    missing: dict[str, list[str]] = {}
    for name, manifest in runs.manifests().items():
        recorded = manifest.get("dataset")
        source = recorded.get("source") if isinstance(recorded, dict) else None
        if isinstance(source, str) and source and datasets.find_recorded(manifest)[0] is None:
            shown = "".join(c for c in source if c.isprintable())[:200]
            missing.setdefault(shown, []).append(name)
    return [
        f"run{'s' if len(names) > 1 else ''} {', '.join(names[:3])}{' …' if len(names) > 3 else ''} "
        f"{'were' if len(names) > 1 else 'was'} told from {source}: add --dataset {source} to see the frames"
        for source, names in missing.items()
    ]


def _open_when_started(server, url: str, timeout: float = 30.0) -> None:
    import webbrowser

    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.started:
        webbrowser.open(url)
