"""The engine's ``/info`` read straight from its unix socket: its version and image store in
one request of a few milliseconds, where ``docker version`` and ``docker info`` start the CLI
twice (``docker info`` also asks every CLI plugin for its metadata: a tenth of a second or
more). Only for an engine the CLI would reach on a local socket; anything else (a context, tcp,
ssh) is asked through the CLI."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from compose_tasks.docker import trace
from compose_tasks.docker.builder import config_dir

DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class Info:
    """What the plan needs of ``/info``: the engine's version and its storage driver's status."""

    version: str
    driver_status: tuple[tuple[str, str], ...]


def socket_path(environ: Mapping[str, str]) -> str:
    """The unix socket the docker CLI would use ('' when it would use a context or another
    transport): ``DOCKER_HOST=unix://…``, else the default socket when no context is chosen."""
    host = environ.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else ""
    if environ.get("DOCKER_CONTEXT", "default") != "default":
        return ""
    config = config_dir(environ) / "config.json"
    try:
        current = json.loads(config.read_text()).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        current = "default"
    return DEFAULT_SOCKET if current == "default" else ""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def info(environ: Mapping[str, str], timeout: float = 10.0) -> Info | None:
    """``/info`` of the engine on the CLI's local socket; None when there is none, it does not
    answer or answers something else (the CLI is asked then, and says why)."""
    path = socket_path(environ)
    if not path:
        return None
    with trace.timed(f"engine: info over {path}"):
        connection = _UnixConnection(path, timeout)
        try:
            connection.request("GET", "/info")
            response = connection.getresponse()
            body = response.read() if response.status == 200 else b""
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
    try:
        data = json.loads(body)
        status = tuple((str(key), str(value)) for key, value in data.get("DriverStatus") or [])
        version = str(data["ServerVersion"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return Info(version, status)
