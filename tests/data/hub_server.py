"""A small Hugging Face Hub on loopback, enough for huggingface_hub's ``create_repo`` and ``upload_folder``.

It speaks the Hub's HTTP API as huggingface_hub's own client calls it (``HF_ENDPOINT`` pointed
here, ``HF_HUB_DISABLE_XET=1`` so files travel inline in the commit rather than through the
Xet storage service): ``POST /api/repos/create``, ``GET /api/{type}s/{repo}/tree/{rev}``
(what ``delete_patterns`` lists), ``POST /api/validate-yaml`` (the card's metadata: shape
checks of :func:`card_errors`, a subset of the Hub's), ``POST …/preupload/{rev}`` (every
file "regular") and ``POST …/commit/{rev}`` (NDJSON: a header, then each file
base64-encoded, or deleted). Each
repository's files are kept in memory, so a test reads back exactly what was uploaded.
``refuse=401`` answers every request with that status, as the Hub does a bad token.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_REPO = r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)"


def card_errors(content: str) -> list[str]:
    """The shape checks this hub makes of a card's YAML (a subset of the real Hub's: it parses, it is a
    mapping, the fields a dataset card uses have their types, each config maps splits to paths)."""
    import yaml

    if not content.startswith("---\n"):
        return []
    front = content[4:].split("\n---", 1)[0]
    try:
        data = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        return [f"YAML does not parse: {exc}"]
    if not isinstance(data, dict):
        return ["the YAML metadata is not a mapping"]
    errors = []
    if "license" in data and not isinstance(data["license"], (str, list)):
        errors.append('"license" must be a string')
    for key in ("task_categories", "tags", "language", "size_categories"):
        if key in data and not (isinstance(data[key], list) and all(isinstance(v, str) for v in data[key])):
            errors.append(f'"{key}" must be a list of strings')
    for config in data.get("configs") or []:
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            errors.append('"configs" entries need a config_name')
            continue
        for item in config.get("data_files") or []:
            if not (isinstance(item, dict) and isinstance(item.get("split"), str) and item.get("path")):
                errors.append('"data_files" entries need a split and a path')
    return errors


class FakeHub:
    def __init__(self, *, refuse: int | None = None) -> None:
        self.refuse = refuse
        # repo id -> {"type", "private", "files": {path: bytes}, "commits": [...]}
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.cards: list[dict] = []  # what validate-yaml was sent
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    return self.rfile.read(length)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return b""

            def _send(self, status: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                body = self._body()
                path = self.path.split("?", 1)[0]
                hub.requests.append((method, path))
                if hub.refuse:
                    self._send(hub.refuse, {"error": "Invalid credentials in Authorization header"})
                    return
                if method == "POST" and path == "/api/repos/create":
                    data = json.loads(body)
                    name = (
                        data["name"] if "/" in data["name"] else f"{data.get('organization')}/{data['name']}"
                    )
                    repo = hub.repos.setdefault(
                        name, {"type": data.get("type", "model"), "files": {}, "commits": []}
                    )
                    repo["private"] = data.get("visibility") == "private" or bool(data.get("private"))
                    self._send(200, {"url": f"{hub.url}/datasets/{name}", "name": name})
                    return
                if method == "GET" and path == "/api/agent-harnesses":  # the client's registry lookup
                    self._send(200, {"standardEnvVars": [], "harnesses": {}})
                    return
                if method == "POST" and path == "/api/validate-yaml":
                    data = json.loads(body)
                    hub.cards.append(data)
                    errors = card_errors(data.get("content", ""))
                    self._send(
                        400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []}
                    )
                    return
                m = re.fullmatch(_REPO + r"/(?P<op>tree|preupload|commit)/(?P<rev>[^/]+)(?:/.*)?", path)
                if m is None or m["repo"] not in hub.repos:
                    hub.unknown.append((method, path))
                    self._send(404, {"error": f"no route {method} {path}"})
                    return
                repo = hub.repos[m["repo"]]
                if m["op"] == "tree" and method == "GET":
                    files = [{"type": "file", "path": p, "size": len(b), "oid": "0" * 40}
                             for p, b in sorted(repo["files"].items())]  # fmt: skip
                    self._send(200, files)
                elif m["op"] == "preupload" and method == "POST":
                    wanted = json.loads(body)["files"]
                    self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                "oid": None} for f in wanted]})  # fmt: skip
                elif m["op"] == "commit" and method == "POST":
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = lines[0]["value"]
                    for item in lines[1:]:
                        value = item["value"]
                        if item["key"] == "file":
                            repo["files"][value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "deletedFile":
                            repo["files"].pop(value["path"], None)
                        else:
                            hub.unknown.append(("commit item", item["key"]))
                    oid = f"{len(repo['commits']) + 1:040x}"
                    repo["commits"].append({"summary": header.get("summary"), "oid": oid})
                    self._send(200, {"commitUrl": f"{hub.url}/datasets/{m['repo']}/commit/{oid}", "commitOid": oid,
                                     "pullRequestUrl": None})  # fmt: skip
                else:
                    hub.unknown.append((method, path))
                    self._send(404, {"error": f"no route {method} {path}"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        # the client caches what it fetches from a hub (a registry, a token check) under HF_HOME: a home of its
        # own, so nothing of this hub lands in the user's cache
        self._home = tempfile.TemporaryDirectory(prefix="fake-hub-home-")

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._home.cleanup()

    def env(self, token: str = "hf_test_token") -> dict[str, str]:
        """The environment that sends huggingface_hub here (and not through Xet storage)."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": token,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": self._home.name,
        }
