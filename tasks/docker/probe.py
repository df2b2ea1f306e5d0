"""The engine's API straight from its unix socket, for the calls of every build: ``/info`` (its
version and image store in one request of a few milliseconds, where ``docker version`` and
``docker info`` start the CLI twice, and ``docker info`` asks every CLI plugin for its metadata
first: a tenth of a second or more), image lookups and tags (a request each, at once, where a
CLI process costs tens of milliseconds and the SDK's import a tenth of a second). Only for an
engine the CLI would reach on a local socket; anything else (a context, tcp, ssh) is asked
through the CLI or SDK."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compose_tasks.docker import trace
from compose_tasks.docker.builder import config_dir
from compose_tasks.docker.refs import split_ref

DEFAULT_SOCKET = "/var/run/docker.sock"
AT_ONCE = 8  # requests in flight on the socket


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


def _request(path: str, method: str, url: str, timeout: float) -> tuple[int, bytes] | None:
    """One request on the socket at ``path``: the status and body, or None when it does not
    answer."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request(method, url)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def info(environ: Mapping[str, str], timeout: float = 10.0) -> Info | None:
    """``/info`` of the engine on the CLI's local socket; None when there is none, it does not
    answer or answers something else (the CLI is asked then, and says why)."""
    path = socket_path(environ)
    if not path:
        return None
    with trace.timed(f"engine: info over {path}"):
        answer = _request(path, "GET", "/info", timeout)
    if answer is None or answer[0] != 200:
        return None
    try:
        data = json.loads(answer[1])
        status = tuple((str(key), str(value)) for key, value in data.get("DriverStatus") or [])
        version = str(data["ServerVersion"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return Info(version, status)


def images(path: str, refs: Sequence[str], timeout: float = 30.0) -> list[Any] | None:
    """Each of ``refs`` inspected through the socket at ``path``, all at once: the engine's
    data of its image, or None where it holds none; None when the engine does not answer them
    all (the CLI is asked then, and says why)."""

    def inspect(ref: str) -> tuple[bool, Any]:
        url = f"/images/{urllib.parse.quote(ref, safe='/:')}/json"
        answer = _request(path, "GET", url, timeout)
        if answer is None or answer[0] not in (200, 400, 404):  # 400: not a valid reference
            return False, None
        try:
            return True, json.loads(answer[1]) if answer[0] == 200 else None
        except ValueError:
            return False, None

    with (
        trace.timed(f"engine: inspect {len(refs)} images over {path}"),
        ThreadPoolExecutor(max_workers=AT_ONCE) as pool,
    ):
        found = list(pool.map(inspect, refs))
    return [data for _, data in found] if all(ok for ok, _ in found) else None


def labelled(path: str, labels: Mapping[str, str], timeout: float = 30.0) -> list[Any] | None:
    """The engine's list of its images carrying every one of ``labels`` (each with its id, tags
    and labels), through the socket at ``path``; None when it does not answer (the CLI is asked
    then, and says why)."""
    filters = json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})
    url = f"/images/json?{urllib.parse.urlencode({'filters': filters})}"
    with trace.timed(f"engine: list images labelled over {path}"):
        answer = _request(path, "GET", url, timeout)
    if answer is None or answer[0] != 200:
        return None
    try:
        found = json.loads(answer[1])
    except ValueError:
        return None
    return [row for row in found if isinstance(row, dict)] if isinstance(found, list) else None


def credentials(environ: Mapping[str, str]) -> bool:
    """Whether the docker config may hold registry credentials (``auths``, a credential store or
    helpers; or the legacy ``~/.dockercfg``): then the SDK, which sends them, asks registries."""
    try:
        data = json.loads((config_dir(environ) / "config.json").read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError):
        return True  # unreadable: leave it to the SDK
    if not isinstance(data, dict):
        return True
    held = any(data.get(key) for key in ("auths", "credsStore", "credHelpers"))
    return held or (Path.home() / ".dockercfg").exists()


def distribution(path: str, ref: str, timeout: float = 60.0) -> tuple[int, str] | None:
    """What the engine at ``path`` says of ``ref``'s manifest in its registry (asked without
    credentials): the status, and the engine's words when not 200; None when it does not
    answer."""
    url = f"/distribution/{urllib.parse.quote(ref, safe='/:@')}/json"
    with trace.timed(f"engine: registry lookup {ref} over {path}"):
        answer = _request(path, "GET", url, timeout)
    if answer is None:
        return None
    status, body = answer
    return status, "" if status == 200 else _message(status, body)


def _message(status: int, body: bytes) -> str:
    """The engine's message in an error answer."""
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return message or body.decode(errors="replace").strip() or f"status {status}"


def tag(path: str, source: str, target: str, timeout: float = 60.0) -> str:
    """Point ``target`` at ``source``'s image through the socket at ``path``: '' when done,
    else why not, in the engine's words."""
    repository, name = split_ref(target)
    query = urllib.parse.urlencode({"repo": repository, "tag": name or "latest"})
    url = f"/images/{urllib.parse.quote(source, safe='/:')}/tag?{query}"
    with trace.timed(f"engine: tag {source} {target}"):
        answer = _request(path, "POST", url, timeout)
    if answer is None:
        return f"the engine at {path} did not answer"
    status, body = answer
    return "" if status in (200, 201) else _message(status, body)
