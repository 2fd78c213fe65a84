"""Running the studio app with uvicorn on a socket bound beforehand.

Binding first means a busy port is one clear error before anything heavy loads, and
``port=0`` picks a free port whose number is known before the server starts.
:class:`BackgroundServer` runs the app in a thread (what the tests use).
"""

from __future__ import annotations

import socket
import threading
import time

from ..errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a busy port or an unknown host is a :class:`UsageError`."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on host {host!r} ({exc.strerror}); pass --host 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another port with --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_server(app, *, log_level: str = "warning", graceful: float = 3.0):
    try:
        import uvicorn
    except ImportError:
        raise UsageError("the studio needs uvicorn: pip install 'storyreasoning[studio]'") from None
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=graceful,
        lifespan="on",
        # Server-sent events must not be held back by proxies; uvicorn never buffers them.
        server_header=False,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            # event streams would hold their connections to the graceful timeout, then be
            # cut (noisily): they end first, so the connections close at once
            jobs = getattr(getattr(self.config.app, "state", None), "jobs", None)
            if jobs is not None:
                jobs.end_streams()
            await super().shutdown(sockets=sockets)

    return Server(config)


class BackgroundServer:
    """The app served by uvicorn in a daemon thread on ``host`` (port 0: a free one).

    ``with BackgroundServer(app) as server: urlopen(server.url + "/api/config")``.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 20.0) -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn_server(app, graceful=1.0)
        self.startup_timeout = startup_timeout
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="studio-server", daemon=True
        )

    def start(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the studio server stopped while starting; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the studio server did not start within {self.startup_timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
