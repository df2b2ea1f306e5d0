"""Each cache entry of a service, checked: where its image exists, whether the builder can
read or export it, and what a user should know about it. Pure: lookups come in as ``Locate``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from compose_tasks import mask
from compose_tasks.buildplan import cachedir
from compose_tasks.buildplan.model import CacheSource, Status
from compose_tasks.docker.builder import Builder, Found, Where
from compose_tasks.docker.refs import BUILDCACHE_TAG, cache_entry, has_registry, registry_host

CACHE_DIR = "cache folder"  # origins of the cache folder strategy's entries
REGISTRY_CACHE = "registry cache"
SILENT = "its registry did not answer in time: dropped, the build would wait on it"
# (ref, ask its registry too, a local image counts) -> where it is
Locate = Callable[[str, bool, bool], Found | None]


def _source(entry: str, origin: str, locate: Locate, builder: Builder) -> CacheSource:
    """Check one entry. Entries the compose file names are asked of their registry (Docker Hub
    when the ref names none); refs the tool derives only when they name a registry host. A
    local image counts only where the builder reads local images."""
    kind, ref = cache_entry(entry)
    if ref is None:
        if kind not in builder.exports:
            why = f"'{kind}' cache needs a buildx builder with a docker-container driver"
            return CacheSource(entry, origin, Status.DROPPED, why)
        if origin == CACHE_DIR and not cachedir.filled(Path(_field(entry, "src"))):
            return CacheSource(entry, origin, Status.DROPPED, "empty: no build exported here yet")
        return CacheSource(entry, origin, Status.BACKEND, f"{kind} cache")
    remote = origin == "compose file" or has_registry(ref)
    if not builder.local_images and not remote:
        return CacheSource(entry, origin, Status.DROPPED, builder.no_local_images())
    found = locate(ref, remote, builder.local_images)
    if found is None:
        if builder.local_images:
            why = "no such image locally or in its registry"
        elif has_registry(ref):
            why = "no such image in its registry"
        else:  # a Docker Hub ref: the builder asks Docker Hub, whatever this engine holds
            why = f"not on Docker Hub, and {builder.no_local_images()}"
        return CacheSource(entry, origin, Status.DROPPED, why)
    if found.where is Where.SILENT:
        return CacheSource(entry, origin, Status.DROPPED, SILENT)
    if found.where is Where.UNVERIFIED:
        why = "its registry could not be reached; kept, the builder may still find it"
        if not builder.local_images and not has_registry(ref):
            why += f" there ({builder.no_local_images()})"
        return CacheSource(entry, origin, Status.UNVERIFIED, why)
    status = Status.LOCAL if found.where is Where.LOCAL else Status.REGISTRY
    return CacheSource(entry, origin, status, inline=found.inline)


def _field(entry: str, key: str) -> str:
    """One ``key=value`` field of a cache entry."""
    return next(
        (part[len(key) + 1 :] for part in entry.split(",") if part.startswith(f"{key}=")), ""
    )


def export_of(entry: str, exports: Sequence[str]) -> CacheSource:
    """A compose ``cache_to`` entry, dropped when the builder cannot export its type."""
    kind, _ = cache_entry(entry)
    if kind in exports:
        return CacheSource(entry, "compose file", Status.BACKEND, f"{kind} cache export")
    return CacheSource(
        entry,
        "compose file",
        Status.DROPPED,
        f"this builder cannot export '{kind}' cache (compose would fail the build; "
        "needs a buildx builder with a docker-container driver or the containerd image store)",
    )


def checked(
    candidates: Sequence[tuple[str, str]], locate: Locate, builder: Builder, fresh: bool
) -> list[CacheSource]:
    """Each distinct candidate (entry, origin), checked (all dropped with ``--fresh``)."""
    sources: list[CacheSource] = []
    for entry, origin in candidates:
        if any(entry == seen.entry for seen in sources):
            continue
        if fresh:
            why = "--fresh builds without cache"
            sources.append(CacheSource(entry, origin, Status.DROPPED, why))
        else:
            sources.append(_source(entry, origin, locate, builder))
    return sources


def warnings_of(
    name: str, sources: Sequence[CacheSource], exports: Sequence[CacheSource]
) -> list[str]:
    """What a user should know about a service's cache entries."""
    out = [
        f"{name}: cache_to {export.entry} {export.describe()}"
        for export in exports
        if not export.kept
    ]
    secrets = mask.active()
    for source in sources:
        if source.kept and secrets.text(source.entry) != source.entry:
            out.append(
                f"{name}: cache entry {secrets.text(source.entry)} holds a secret; it is written "
                "to the generated override (mode 0600) and shown masked"
            )
        if source.kept and source.inline is False:
            out.append(
                f"{name}: cache source {source.entry} has no inline cache metadata; "
                "it can only serve after a build with BUILDKIT_INLINE_CACHE=1"
            )
    return out


def silent_hosts(sources: Sequence[CacheSource]) -> set[str]:
    """The registries one of whose lookups went unanswered (``SILENT``)."""
    return {registry_host(cache_entry(s.entry)[1] or "") for s in sources if s.reason == SILENT}


def unanswered(
    sources: Sequence[CacheSource], exports: Sequence[CacheSource]
) -> tuple[tuple[CacheSource, ...], tuple[CacheSource, ...]]:
    """The sources and exports, less those of a registry one of whose lookups went unanswered
    (``SILENT``): BuildKit would wait on it without a limit, holding the engine's builder. (Of
    two lookups at once of a silent registry, the engine may answer one "unreachable".)"""
    silent = silent_hosts(sources)

    def quiet(source: CacheSource, why: str) -> CacheSource:
        if source.kept and registry_host(cache_entry(source.entry)[1] or "") in silent:
            return CacheSource(source.entry, source.origin, Status.DROPPED, why)
        return source

    exported = SILENT.replace("dropped", "not exported")
    return tuple(quiet(s, SILENT) for s in sources), tuple(quiet(e, exported) for e in exports)


def own_exports(folder: str, image: str, push: bool) -> tuple[CacheSource, ...]:
    """The cache exports of the cache folder strategy: the service's next cache folder, and its
    registry cache tag when the build pushes."""
    exports = [
        CacheSource(
            f"type=local,dest={folder}{cachedir.NEXT},mode=max",
            CACHE_DIR,
            Status.BACKEND,
            "local cache export, every stage",
        )
    ]
    if push and has_registry(image):
        entry = f"type=registry,ref={image}:{BUILDCACHE_TAG},mode=max"
        exports.append(CacheSource(entry, REGISTRY_CACHE, Status.BACKEND, "registry cache export"))
    return tuple(exports)
