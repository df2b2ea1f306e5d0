"""A stand-in engine on a unix socket (no docker): ``/info``, image inspects, lists and tags,
and registry lookups, as the engine's API answers them."""

from __future__ import annotations

import json
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest

ANSWER = {
    "ServerVersion": "28.5.2",
    "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
}


OURS = {"org.compose-tasks.project": "shop"}
# the engine's image list: ours (two tags), ours untagged, another project's
LISTED: list[dict[str, Any]] = [
    {"Id": "sha256:def", "RepoTags": ["shop-app:abc", "shop-app:latest"], "Labels": OURS},
    {"Id": "sha256:012", "RepoTags": ["<none>:<none>"], "Labels": OURS},
    {"Id": "sha256:345", "RepoTags": ["other-app:1"], "Labels": {"org.compose-tasks.project": "o"}},
]


class StandIn(BaseHTTPRequestHandler):
    body = json.dumps(ANSWER).encode()
    images: ClassVar = frozenset({"app:1", "sha256:abc"})  # what the stand-in engine holds
    tagged: ClassVar[list[str]] = []  # each tag made, in order

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        source = urllib.parse.unquote(url.path.removeprefix("/images/").removesuffix("/tag"))
        if source in self.images:
            self.tagged.append(f"{source} -> {query['repo'][0]}:{query['tag'][0]}")
            status, body = 201, b""
        else:
            status, body = 404, json.dumps({"message": f"No such image: {source}"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        body, status = self.body, 200 if self.path == "/info" else 404
        image = urllib.parse.unquote(self.path.removeprefix("/images/").removesuffix("/json"))
        if self.path.startswith("/images/json?"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            wanted = json.loads(query["filters"][0])["label"]
            rows = [
                row for row in LISTED if all(f"{k}={v}" in wanted for k, v in row["Labels"].items())
            ]
            body, status = json.dumps(rows).encode(), 200
        elif self.path.startswith("/distribution/"):
            held = self.path == "/distribution/127.0.0.1:5000/shop/app:cache/json"
            body = b"{}" if held else json.dumps({"message": "manifest unknown"}).encode()
            status = 200 if held else 404
        elif self.path.startswith("/images/") and image in self.images:
            body = json.dumps({"Id": "sha256:abc", "RepoTags": [image], "Config": {}}).encode()
            status = 200
        elif image == "broken":
            status = 500
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = super().get_request()
        return request, ("local", 0)  # http.server wants a (host, port) address


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    server = _Server(str(path), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()
