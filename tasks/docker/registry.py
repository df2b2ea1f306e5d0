"""Images in a registry (Docker Registry HTTP API v2), stdlib only: inspect, list, copy a tag,
delete. Credentials come from the docker CLI's config (``auths``, ``credHelpers``,
``credsStore``); a registry that answers 401 gets them as Basic auth or, for token auth (Docker
Hub, GHCR, ECR...), in exchange for a bearer token for the repository; never printed."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from compose_tasks.docker.builder import config_dir
from compose_tasks.docker.refs import BUILDCACHE_TAG, not_ours_reason, owned_by, split_ref
from compose_tasks.errors import first_line

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
CACHE_CONFIG_TYPE = "application/vnd.buildkit.cacheconfig.v0"  # a registry cache's config
TIMEOUT = 10


def _plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0]
    return name in ("localhost", "::1") or name.startswith("127.")


def _repo_url(ref: str) -> tuple[str, str]:
    """``scheme://host/v2/<name>`` of a ref's repository, and its tag (default ``latest``) or
    the digest after ``@``."""
    name, at, pinned = ref.partition("@")
    repo, tag = split_ref(name)
    host, _, path = repo.partition("/")
    scheme = "http" if _plain_http(host) else "https"
    return f"{scheme}://{host}/v2/{path}", pinned if at else (tag or "latest")


def _url(ref: str) -> str:
    base, tag = _repo_url(ref)
    return f"{base}/manifests/{tag}"


# --- credentials and auth --------------------------------------------------------------------

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_tokens: dict[tuple[str, str], str] = {}  # (host, scope) -> "Bearer <token>" / "Basic <...>"
_lock = threading.Lock()


def _docker_config() -> dict[str, Any]:
    folder = config_dir(os.environ)
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def credentials(host: str) -> tuple[str, str] | None:
    """(user, secret) for a registry host from the docker CLI's config and its helpers."""
    config = _docker_config()
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        try:
            done = subprocess.run(
                [f"docker-credential-{helper}", "get"],
                input=host,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            found = json.loads(done.stdout) if done.returncode == 0 else {}
        except (OSError, ValueError, subprocess.TimeoutExpired):
            found = {}
        if found.get("Secret"):
            return str(found.get("Username") or ""), str(found["Secret"])
    for key, entry in (config.get("auths") or {}).items():
        name = urllib.parse.urlparse(key).netloc if "://" in key else key.split("/")[0]
        if name == host and isinstance(entry, dict) and entry.get("auth"):
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, secret
    return None


def _basic(pair: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode()


def _authorize(host: str, challenge: str, scope: str) -> str:
    """The Authorization header a 401's challenge asks for ('' when it cannot be met)."""
    kind, _, rest = challenge.partition(" ")
    pair = credentials(host)
    if kind.lower() == "basic":
        return _basic(pair) if pair else ""
    if kind.lower() != "bearer":
        return ""
    fields = dict(_CHALLENGE.findall(rest))
    realm = fields.pop("realm", "")
    if not realm.startswith(("https://", "http://")):
        return ""
    query = {"service": fields.get("service", ""), "scope": fields.get("scope") or scope}
    request = urllib.request.Request(  # noqa: S310 - the registry's own token endpoint
        f"{realm}?{urllib.parse.urlencode({k: v for k, v in query.items() if v})}",
        headers={"Authorization": _basic(pair)} if pair else {},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        data = json.loads(response.read())
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    return f"Bearer {token}" if token else ""


def _scope(url: str, write: bool) -> tuple[str, str]:
    """(host, token scope) of a registry API URL."""
    parts = urllib.parse.urlparse(url)
    name = re.sub(r"/(manifests|blobs|tags)/.*$", "", parts.path.removeprefix("/v2/"))
    return parts.netloc, f"repository:{name}:{'pull,push' if write else 'pull'}"


def _open(request: urllib.request.Request, write: bool = False) -> Any:
    """``urlopen`` with the registry's auth: a 401 is answered once with what it asks for."""
    host, scope = _scope(request.full_url, write)
    with _lock:
        held = _tokens.get((host, scope))
    if held:
        request.add_header("Authorization", held)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310
    except urllib.error.HTTPError as exc:
        challenge = exc.headers.get("WWW-Authenticate", "") if exc.code == 401 else ""
        if not challenge or held:
            raise
        header = _authorize(host, challenge, scope)
        if not header:
            raise
        with _lock:
            _tokens[host, scope] = header
        request.add_header("Authorization", header)
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310


def _gist(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"registry answered {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"registry unreachable ({exc.reason})"
    return first_line(exc, 120)


def _get_json(url: str, accept: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310
    with _open(request) as response:
        data = json.loads(response.read())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _manifest(ref: str) -> dict[str, Any]:
    """The manifest behind a tag, as the registry stores it (an index stays an index)."""
    return _get_json(_url(ref), MANIFEST_TYPES)


def is_cache(manifest: dict[str, Any]) -> bool:
    """Whether a manifest is a BuildKit registry cache (``type=registry`` cache export)."""
    parts = [manifest.get("config") or {}, *(manifest.get("manifests") or [])]
    return any(part.get("mediaType") == CACHE_CONFIG_TYPE for part in parts)


def _config(ref: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The image config of a single-platform image, or of an index's first real platform (the
    containerd image store pushes indexes, with attestation manifests as ``unknown/unknown``);
    ``manifest``: the tag's, when already read."""
    manifest = manifest if manifest is not None else _manifest(ref)
    if "manifests" in manifest:
        chosen = next(
            (
                entry
                for entry in manifest.get("manifests") or []
                if (entry.get("platform") or {}).get("os") not in (None, "unknown")
            ),
            None,
        )
        if chosen is None:
            raise ValueError("the index names no image for a platform")
        base = _url(ref).rsplit("/manifests/", 1)[0]
        manifest = _get_json(f"{base}/manifests/{chosen['digest']}", SINGLE_MANIFEST_TYPES)
    config_digest = str((manifest.get("config") or {}).get("digest") or "")
    if not config_digest:
        raise ValueError("the manifest names no image config")
    return _get_json(_url(ref).rsplit("/manifests/", 1)[0] + "/blobs/" + config_digest, "*/*")


def inline_cache(ref: str) -> bool | None:
    """Whether a registry image's config carries BuildKit inline cache metadata (None: unknown,
    e.g. a registry that wants credentials)."""
    try:
        config = _config(ref)
    except (OSError, ValueError):
        return None
    return INLINE_CACHE_KEY in config


def digest(ref: str) -> str | None:
    """The manifest digest a tag points to; None when the tag does not exist. OSError otherwise."""
    head = urllib.request.Request(_url(ref), method="HEAD", headers={"Accept": MANIFEST_TYPES})  # noqa: S310
    try:
        with _open(head) as response:
            found = str(response.headers.get("Docker-Content-Digest", ""))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise OSError(_gist(exc)) from None
    if not found:
        raise OSError(f"registry gave no digest for {ref}")
    return found


def tags(ref: str) -> list[str]:
    """Every tag of the ref's repository."""
    base, _ = _repo_url(ref)
    try:
        data = _get_json(f"{base}/tags/list", "application/json")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise OSError(_gist(exc)) from None
    return [str(tag) for tag in data.get("tags") or []]


def labels(ref: str, manifest: dict[str, Any] | None = None) -> dict[str, str]:
    """The image config's labels of an image in a registry (``manifest``: its, when read)."""
    found = (_config(ref, manifest).get("config") or {}).get("Labels") or {}
    return {str(key): str(value) for key, value in found.items()}


@dataclass(frozen=True)
class Deletion:
    """What a clear may do with one registry tag: the digest to delete, or why it stays."""

    ref: str
    digest: str = ""  # set: delete this manifest
    kept: str = ""  # set: why the tag stays


def _judge(ref: str, project: str) -> Deletion:
    try:
        found = digest(ref)
        if found is None:
            return Deletion(ref, kept="already gone")
        if split_ref(ref)[1] == BUILDCACHE_TAG and is_cache(_manifest(ref)):
            return Deletion(ref, digest=found)  # the cache tag of a repository of ours
        image_labels = labels(ref)
    except (OSError, ValueError) as exc:
        return Deletion(ref, kept=f"cannot prove it is ours: {_gist(exc)}")
    if not owned_by(image_labels, project):
        return Deletion(ref, kept=f"not ours: {not_ours_reason(image_labels, project)}")
    return Deletion(ref, digest=found)


def plan_deletions(refs: Sequence[str], project: str) -> list[Deletion]:
    """Which of ``refs`` may go: only our images, and never a manifest another tag points to.

    The registry API deletes manifests by digest, which removes every tag on it; so a tag is
    deleted only when no tag outside ``refs`` shares its digest.
    """
    judged = [_judge(ref, project) for ref in dict.fromkeys(refs)]
    ours = {item.ref for item in judged if item.digest}
    out: list[Deletion] = []
    for item in judged:
        if not item.digest:
            out.append(item)
            continue
        repo, _ = split_ref(item.ref)
        try:
            sharing = [
                tag
                for tag in tags(item.ref)
                if f"{repo}:{tag}" not in ours and digest(f"{repo}:{tag}") == item.digest
            ]
        except (OSError, ValueError) as exc:
            out.append(Deletion(item.ref, kept=f"cannot list the other tags: {_gist(exc)}"))
            continue
        if sharing:
            shared = ", ".join(":" + tag for tag in sharing)
            item = Deletion(
                item.ref,
                kept=f"not deleted: manifest shared with {shared} (the registry deletes by "
                "digest, which would remove those tags too)",
            )
        out.append(item)
    return out


def delete(ref: str, manifest: str) -> str:
    """Delete one manifest by digest; return what happened, raise OSError on failure."""
    target = _url(ref).rsplit("/", 1)[0] + "/" + manifest
    request = urllib.request.Request(target, method="DELETE")  # noqa: S310
    try:
        with _open(request, write=True):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "already gone"
        if exc.code == 405:
            raise OSError("the registry does not allow deletes (storage.delete.enabled)") from None
        raise OSError(f"{_gist(exc)} deleting {ref}") from None
    except urllib.error.URLError as exc:
        raise OSError(_gist(exc)) from None
    return f"deleted {manifest[:19]}"


# --- up to date in the registry: read an image's labels, copy its manifest to a new tag -------


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry stores it: copied byte for byte, it keeps its digest."""

    ref: str
    media_type: str
    body: bytes

    @property
    def index(self) -> bool:
        return "index" in self.media_type or "list" in self.media_type


def manifest(ref: str) -> Manifest | None:
    """The manifest a tag names (None: no such tag); OSError when the registry cannot say."""
    request = urllib.request.Request(_url(ref), headers={"Accept": MANIFEST_TYPES})  # noqa: S310
    try:
        with _open(request) as response:
            kind = str(response.headers.get("Content-Type", "")).split(";")[0].strip()
            return Manifest(ref, kind, response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise OSError(_gist(exc)) from None
    except urllib.error.URLError as exc:
        raise OSError(_gist(exc)) from None


def image_labels(ref: str) -> dict[str, str] | None:
    """The labels of a tag's image (None: no such tag): one manifest and one config read;
    OSError when the registry cannot say, ValueError when what it holds is no image (a cache
    manifest, an index of none)."""
    found = manifest(ref)
    if found is None:
        return None
    try:
        data = json.loads(found.body)
        return labels(ref, data if isinstance(data, dict) else None)
    except urllib.error.HTTPError as exc:
        raise OSError(_gist(exc)) from None
    except urllib.error.URLError as exc:
        raise OSError(_gist(exc)) from None


def copy(found: Manifest, target: str) -> None:
    """Tag ``target`` (same repository) with a manifest: one PUT of the same bytes, no layer
    moves. OSError with the registry's reason when it refuses."""
    request = urllib.request.Request(  # noqa: S310
        _url(target), data=found.body, method="PUT", headers={"Content-Type": found.media_type}
    )
    try:
        with _open(request, write=True):
            pass
    except urllib.error.HTTPError as exc:
        raise OSError(f"{_gist(exc)} to PUT {target}") from None
    except urllib.error.URLError as exc:
        raise OSError(_gist(exc)) from None


def layers(ref: str) -> set[str]:
    """The layer digests of an image in the registry (of every platform's image of an index);
    OSError when the registry cannot say."""
    found = manifest(ref)
    if found is None:
        return set()
    data = json.loads(found.body)
    if "manifests" not in data:
        return {str(layer["digest"]) for layer in data.get("layers") or []}
    repo = ref.split("@", 1)[0]
    return {d for entry in data["manifests"] for d in layers(f"{repo}@{entry['digest']}")}
