"""The Docker engine through the SDK: connect, look up and tag images, detect the builder.

The only module that uses the SDK, and it loads it on first use, so tasks that never talk to
the engine (``--list``, ``config``, ``history``) do not pay for it. Other modules take the SDK's
error types from here (``engine.APIError``), evaluated only when an error is being handled.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from tasks import commands
from tasks.errors import UserError
from tasks.plan import Builder, Found, builder_from
from tasks.refs import LABEL_INLINE, short_name, split_ref
from tasks.runner import Runner

_ERRORS = ("APIError", "DockerException", "ImageNotFound", "NotFound")


def _errors() -> Any:
    """The SDK's ``docker.errors`` module, loaded on first use."""
    return importlib.import_module("docker.errors")


def __getattr__(name: str) -> Any:
    """The SDK's error types as attributes of this module (``engine.APIError``)."""
    if name in _ERRORS:
        return getattr(_errors(), name)
    raise AttributeError(name)


def connect() -> Any:
    """A live client for the engine named by DOCKER_HOST (or the default socket)."""
    docker = importlib.import_module("docker")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST") or "the default socket"
        raise UserError(f"cannot reach the Docker engine at {host}: {_first_line(exc)}") from None
    return client


def _absent(exc: Any) -> bool:
    """Whether a registry lookup failed because the image is not there (not: unreachable)."""
    text = str(exc).lower()
    gone = ("not found", "does not exist", "denied", "unauthorized", "manifest unknown")
    return getattr(exc, "status_code", None) in (401, 403, 404) or any(w in text for w in gone)


def _first_line(exc: BaseException) -> str:
    """An error's gist: the OS error inside a connection failure, else its first line."""
    text = str(exc).strip()
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)|\w+Error\(\d+, '([^']+)'\)", text)
    if errno:
        return (errno.group(1) or errno.group(2)).strip()
    lines = text.splitlines()
    return lines[0] if lines else type(exc).__name__


class Images:
    """Image lookups with a per-run memo: one listing of local images answers every tag lookup."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._memo: dict[str, Found | None] = {}
        self._local: dict[str, bool] | None = None  # "repo:tag" -> has inline cache label

    def locate(self, ref: str, remote: bool = True) -> Found | None:
        """Local image first; then, with ``remote``, its registry (Docker Hub for a ref without
        a registry host). A registry that cannot be reached gives ``unverified``, not None."""
        key = f"{ref}|{remote}"
        if key not in self._memo:
            self._memo[key] = self._locate(ref, remote)
        return self._memo[key]

    def _local_tags(self) -> dict[str, bool]:
        if self._local is None:
            try:
                listed = self.client.api.images()
            except _errors().APIError as exc:
                raise UserError(f"engine error listing images: {_first_line(exc)}") from None
            self._local = {
                tag: (image.get("Labels") or {}).get(LABEL_INLINE) == "1"
                for image in listed
                for tag in image.get("RepoTags") or ()
            }
        return self._local

    def _locate(self, ref: str, remote: bool) -> Found | None:
        if "@" in ref:
            found = self._get(ref)
            if found is not None or not remote:
                return found
        else:
            repo, tag = split_ref(short_name(ref))
            inline = self._local_tags().get(f"{repo}:{tag or 'latest'}")
            if inline is not None:
                return Found("local", inline)
        if not remote:
            return None
        try:
            self.client.images.get_registry_data(ref)
        except _errors().APIError as exc:
            return None if _absent(exc) else Found("unverified", None)
        return Found("registry", None)

    def _get(self, ref: str) -> Found | None:
        try:
            image = self.client.images.get(ref)
        except _errors().ImageNotFound:
            return None
        except _errors().APIError as exc:
            raise UserError(f"engine error looking up {ref}: {_first_line(exc)}") from None
        labels = (image.attrs.get("Config") or {}).get("Labels") or {}
        return Found("local", labels.get(LABEL_INLINE) == "1")

    def tag(self, source: str, target: str) -> None:
        """Point ``target`` at the image ``source``."""
        repo, tag = split_ref(target)
        self.client.images.get(source).tag(repo, tag or "latest")

    def image_id(self, ref: str) -> str | None:
        """The image id behind a ref, or None."""
        try:
            return str(self.client.images.get(ref).id)
        except _errors().ImageNotFound:
            return None


def detect_builder(client: Any, runner: Runner) -> Builder:
    """The builder compose will use: one ``buildx inspect`` and the engine's storage driver."""
    containerd = any(
        "containerd" in str(value) for _, value in (client.info().get("DriverStatus") or [])
    )
    done = runner.run(commands.buildx_inspect())
    return builder_from(done.out if done.ok else None, containerd)
