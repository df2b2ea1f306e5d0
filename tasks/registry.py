"""Deleting cache refs from a registry (Docker Registry HTTP API v2), stdlib only."""

from __future__ import annotations

import urllib.error
import urllib.request

from tasks.engine import split_ref

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
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
