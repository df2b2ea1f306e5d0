"""The builder compose will use, as data: what it can import and export, found from
``docker buildx inspect``, the engine's version and image store (``engine.detect_builder``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Where(StrEnum):
    """Where a cache ref was found (``unverified``: its registry could not be reached;
    ``silent``: it accepted the connection and never answered)."""

    LOCAL = "local"
    REGISTRY = "registry"
    UNVERIFIED = "unverified"
    SILENT = "silent"


@dataclass(frozen=True)
class Found:
    """Where a cache ref exists, and whether it carries inline cache metadata (None: unknown)."""

    where: Where
    inline: bool | None


@dataclass(frozen=True)
class Builder:
    """How compose will build, and which cache backends it can export."""

    name: str
    exports: tuple[str, ...]
    bake: bool
    containerd: bool = False  # the engine stores images in containerd
    # False on engines whose BuildKit crashes dockerd ("concurrent map writes") when builds that
    # share steps export inline cache at the same time: Engine 20.10 (seen here), 23.0 (reported)
    parallel_inline: bool = True
    # Whether a cache_from image ref may be an image on this engine: only BuildKit inside a
    # classic-store engine reads its local images; on the containerd store (and in a
    # docker-container builder) a cache_from ref is always looked up in its registry.
    local_images: bool = True
    # Whether stage images (inline cache, one image per dependency stage) serve every stage of
    # a multi-stage build every time. Not on the classic store of Engine 24+: measured on 28.5,
    # a fresh runner's build from the registry rebuilt a dependency step in 4 of 6 runs (with
    # compose's own builder and with bake alike), and a build after a prune from local stage
    # images in some runs too; 20.10's served every run.
    stage_images: bool = True
    # Whether an image's inline cache holds the steps its build took from a registry's cache
    # without their layers: BuildKit inside a classic-store engine before 27 (moby/buildkit#2274,
    # fixed by #4796 in BuildKit 0.14). Measured: on 20.10 the next runner reading that image
    # runs such a step again when a step after it runs; on 28.5 it takes it from the cache.
    drops_imported: bool = False

    @property
    def cache_dirs(self) -> bool:
        """Whether the builder exports a local cache folder (every stage, ``mode=max``)."""
        return "local" in self.exports

    def no_local_images(self) -> str:
        """Why a local image is no cache source here (empty: it is one)."""
        if self.local_images:
            return ""
        if self.containerd and (not self.bake or self.name.endswith("driver docker")):
            return (
                "a local image is no cache source on the containerd image store (BuildKit "
                "looks a cache_from image up in its registry)"
            )
        return "a local image is no cache source for a builder with its own BuildKit"

    def describe(self) -> str:
        return f"{self.name} (cache export: {', '.join(self.exports) or 'none'})"


def builder_from(
    buildx_inspect: str | None, containerd: bool, parallel_inline: bool = True
) -> Builder:
    """Compose uses buildx bake when buildx exists; the docker driver exports only inline cache.

    ``buildx_inspect`` is the output of ``docker buildx inspect``, None when buildx is missing.
    """
    if buildx_inspect is None:
        exports = ("inline", "registry", "local") if containerd else ("inline",)
        name = "compose internal builder (buildx not installed)"
        return Builder(name, exports, False, containerd, parallel_inline, not containerd)
    driver = next(
        (
            line.split(":", 1)[1].strip()
            for line in buildx_inspect.splitlines()
            if line.strip().startswith("Driver:")
        ),
        "docker",
    )
    name = f"buildx bake, driver {driver}"
    if driver == "docker" and not containerd:
        return Builder(name, ("inline",), True, containerd, parallel_inline)
    capable = ("inline", "registry", "local", "gha")
    if driver == "docker":  # the engine's own BuildKit, containerd image store
        return Builder(name, capable, True, containerd, parallel_inline, local_images=False)
    # another driver builds in its own BuildKit, not the engine's
    return Builder(name, capable, True, containerd, local_images=False)


BUILDX_NEEDED = (0, 17)  # compose refuses to build beside an older buildx ...
BUILDX_CHECKED_SINCE = (2, 40)  # ... since this compose (docker/compose#13295)


def parse_version(text: str) -> tuple[int, ...]:
    """``v2.40.3-desktop.1`` or ``0.29.1+ds1`` -> (2, 40, 3) / (0, 29, 1)."""
    parts = []
    for piece in text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def buildx_version(text: str) -> tuple[int, ...]:
    """The version in ``docker buildx version`` output (``github.com/docker/buildx v0.13.1 …``)."""
    words = text.split()
    return parse_version(words[1]) if len(words) > 1 else ()


def buildx_mismatch(buildx: tuple[int, ...], compose: tuple[int, ...]) -> str:
    """Why this compose cannot build beside this buildx (empty: it can)."""
    if not buildx or buildx >= BUILDX_NEEDED or compose < BUILDX_CHECKED_SINCE:
        return ""
    need = ".".join(map(str, BUILDX_NEEDED))
    return (
        f"docker buildx {'.'.join(map(str, buildx))} is older than {need}, which compose "
        f"{'.'.join(map(str, compose))} needs to build: upgrade buildx to {need} or later, or "
        "remove the old buildx plugin (compose then builds with its internal builder)"
    )
