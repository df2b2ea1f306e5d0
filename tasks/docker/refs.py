"""Image refs, cache entries and our ownership labels: pure functions, nothing talks to Docker."""

from __future__ import annotations

import re
from collections.abc import Mapping

TOOL = "compose-tasks"
LABEL_TOOL = "org.compose-tasks.tool"  # which tool built the image
LABEL_PROJECT = "org.compose-tasks.project"  # which compose project it was built for
LABEL_SERVICE = "org.compose-tasks.service"
LABEL_COMMIT = "org.compose-tasks.commit"
LABEL_INLINE = "org.compose-tasks.inline-cache"
LABEL_INPUTS = "org.compose-tasks.inputs"  # the digest of the image's build inputs
LABEL_STEPS = "org.compose-tasks.steps"  # each build step's cache key (``steps``)
LABEL_VALUES = "org.compose-tasks.values"  # a short hash of each ARG and ENV value it saw
# the step keys a build took from a registry's cache where its inline cache then lacks them
LABEL_IMPORTED = "org.compose-tasks.imported"
BUILDCACHE_TAG = "buildcache"  # a service image's registry cache tag: <image>:buildcache
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` into (repo, tag); a registry port is not a tag."""
    name = ref.split("@", 1)[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, ""
    return repo, tag


def registry_host(ref: str) -> str:
    """The first component of a ref: its registry host when it names one (``has_registry``)."""
    return ref.partition("/")[0]


def has_registry(ref: str) -> bool:
    """Whether a ref names its registry host (``host.tld/…``, ``host:port/…``, ``localhost/…``)."""
    first, sep, _ = ref.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def short_name(ref: str) -> str:
    """A Docker Hub ref as the engine lists it: ``docker.io/library/x:1`` -> ``x:1``."""
    for prefix in (
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def cache_entry(entry: str) -> tuple[str, str | None]:
    """A cache entry's type and, for the registry type, its image ref.

    ``img:tag`` and ``type=registry,ref=img:tag`` both give ``("registry", "img:tag")``.
    """
    if "=" not in entry:
        return "registry", entry.strip() or None
    fields = dict(part.split("=", 1) for part in entry.split(",") if "=" in part)
    kind = fields.get("type", "registry").strip()
    ref = (fields.get("ref") or "").strip()
    return kind, (ref or None) if kind == "registry" else None


def ownership(project: str, service: str) -> dict[str, str]:
    """The labels that make an image provably ours: this tool, this project, this service."""
    return {LABEL_TOOL: TOOL, LABEL_PROJECT: project, LABEL_SERVICE: service}


def owned_by(labels: Mapping[str, str] | None, project: str) -> bool:
    """Whether an image's labels prove this tool built it for ``project``."""
    labels = labels or {}
    return labels.get(LABEL_TOOL) == TOOL and labels.get(LABEL_PROJECT) == project


def not_ours_reason(labels: Mapping[str, str] | None, project: str) -> str:
    """Why an image is not ours, in a few words."""
    labels = labels or {}
    if labels.get(LABEL_TOOL) == TOOL:
        return f"built by compose-tasks for project '{labels.get(LABEL_PROJECT, '?')}'"
    if labels.get(COMPOSE_PROJECT) == project:
        return "built by plain docker compose, not by compose-tasks"
    if labels.get(COMPOSE_PROJECT):
        return f"built by compose project '{labels[COMPOSE_PROJECT]}'"
    return "no compose-tasks ownership label"


_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
NAME_LIMIT = 255


def ref_error(ref: str) -> str:
    """Why ``ref`` is not an image reference the engine accepts ('' when it is): the grammar of
    distribution's reference package (lowercase path components, a tag of word characters,
    a digest, at most 255 characters of name)."""
    name, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        return f"invalid digest {digest!r}"
    repo, tag = split_ref(name)
    if name.endswith(":") or (tag and not _TAG.match(tag)):
        return f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128)"
    if not repo:
        return "empty name"
    if len(repo) > NAME_LIMIT:
        return f"the name is longer than {NAME_LIMIT} characters"
    parts = repo.split("/")
    if len(parts) > 1 and has_registry(repo) and not _DOMAIN.match(parts[0]):
        return f"invalid registry host {parts[0]!r}"
    path = parts[1:] if len(parts) > 1 and has_registry(repo) else parts
    for part in path:
        if not _PATH_COMPONENT.match(part):
            if part.lower() != part and _PATH_COMPONENT.match(part.lower()):
                return "the repository name must be lowercase"
            return f"invalid name component {part!r} (lowercase letters and digits, '.', '_', '-')"
    return ""
