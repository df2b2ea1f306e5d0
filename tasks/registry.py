"""Cache refs in a registry (Docker Registry HTTP API v2), stdlib only: inspect and delete."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tasks.engine import split_ref

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
SINGLE_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)
INLINE_CACHE_KEY = "moby.buildkit.cache.v0"  # where BuildKit keeps inline cache in an image config
TIMEOUT = 10


def _plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0]
    return name in ("localhost", "::1") or name.startswith("127.")


def _url(ref: str) -> str:
    repo, tag = split_ref(ref)
    host, _, path = repo.partition("/")
    scheme = "http" if _plain_http(host) else "https"
    return f"{scheme}://{host}/v2/{path}/manifests/{tag or 'latest'}"


def delete(ref: str) -> str:
    """Delete a tag's manifest from its registry; return what happened, raise OSError on failure."""
    url = _url(ref)
    head = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})  # noqa: S310
    try:
        with urllib.request.urlopen(head, timeout=TIMEOUT) as response:  # noqa: S310
            digest = response.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "already gone"
        raise OSError(f"registry answered {exc.code} for {ref}") from None
    if not digest:
        raise OSError(f"registry gave no digest for {ref}")
    target = url.rsplit("/", 1)[0] + "/" + digest
    request = urllib.request.Request(target, method="DELETE")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT):  # noqa: S310
            pass
    except urllib.error.HTTPError as exc:
        if exc.code == 405:
            raise OSError("the registry does not allow deletes (storage.delete.enabled)") from None
        raise OSError(f"registry answered {exc.code} deleting {ref}") from None
    return f"deleted {digest[:19]}"


def _get_json(url: str, accept: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        data = json.loads(response.read())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def inline_cache(ref: str) -> bool | None:
    """Whether a registry image's config carries BuildKit inline cache metadata (None: unknown).

    Reads the manifest and the config blob anonymously; a registry that wants credentials, or
    a multi-platform index, gives None.
    """
    url = _url(ref)
    try:
        manifest = _get_json(url, SINGLE_MANIFEST_TYPES)
        digest = str((manifest.get("config") or {}).get("digest") or "")
        if not digest:
            return None
        config = _get_json(url.rsplit("/manifests/", 1)[0] + "/blobs/" + digest, "*/*")
    except (OSError, ValueError):
        return None
    return INLINE_CACHE_KEY in config
