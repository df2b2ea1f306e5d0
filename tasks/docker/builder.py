"""The builder compose will use, as data: what it can import and export, found from
``docker buildx inspect``, the engine's version and image store (``engine.detect_builder``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


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


def stat_of(path: Path | str | None) -> list[Any] | None:
    """Identity of a file: path, modification time, size, inode; None when absent."""
    if not path:
        return None
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return [str(path), info.st_mtime_ns, info.st_size, info.st_ino]


def config_dir(environ: Mapping[str, str]) -> Path:
    """The docker CLI's configuration folder."""
    return Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def cli_tools(environ: Mapping[str, str], plugins: tuple[str, ...]) -> list[Any]:
    """The docker CLI, its config file and every place the ``plugins`` may come from."""
    folder = config_dir(environ)
    try:
        text = (folder / "config.json").read_bytes()
        extra = json.loads(text).get("cliPluginsExtraDirs") or []
    except (OSError, ValueError, AttributeError):
        text, extra = b"", []
    dirs = [str(folder / "cli-plugins"), *map(str, extra), *PLUGIN_DIRS]
    found = [stat_of(Path(where) / name) for name in plugins for where in dirs]
    digest = hashlib.sha256(text).hexdigest()
    return [stat_of(shutil.which("docker", path=environ.get("PATH"))), digest, found]


_SELECTING = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "BUILDX_BUILDER", "BUILDX_CONFIG")


def buildx_key(environ: Mapping[str, str]) -> str:
    """One hash over what ``docker buildx inspect`` and ``version`` answer from: the CLI, the
    buildx plugin, the variables that pick a builder or context, the contexts and builders
    defined (``buildx use`` and ``buildx create`` change them; a build does not)."""
    folder = config_dir(environ)
    buildx = Path(environ.get("BUILDX_CONFIG") or folder / "buildx")
    listed = []
    for where in (folder / "contexts" / "meta", buildx / "instances", buildx / "defaults"):
        for root, _, names in sorted(os.walk(where)):
            listed += [stat_of(Path(root) / name) for name in sorted(names)]
    try:
        current = (buildx / "current").read_text()
    except OSError:
        current = ""
    material = [
        cli_tools(environ, ("docker-buildx",)),
        [(name, environ.get(name)) for name in _SELECTING],
        listed,
        current,
    ]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()
