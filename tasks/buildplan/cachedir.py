"""Local build-cache folders (BuildKit ``type=local`` cache), one per service, outside the project.

A build imports from ``<service>`` and exports into ``<service>.next``; after a good build the new
folder replaces the old one, so each holds one build's cache (BuildKit never removes old blobs
from a folder it exports into). The project's folders stay under a size limit: the least
recently built services' caches go first.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NEXT = ".next"
INDEX = "index.json"  # an OCI layout's index: present once an export finished


def current(folder: Path, service: str) -> Path:
    return folder / service


def upcoming(folder: Path, service: str) -> Path:
    return folder / f"{service}{NEXT}"


def filled(path: Path) -> bool:
    """Whether a cache folder holds a finished export."""
    return (path / INDEX).is_file()


def size(path: Path) -> int:
    """Bytes below ``path`` (0 when it does not exist); symlinks are not followed."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def prepare(folder: Path, services: Sequence[str]) -> None:
    """Make room for the exports: the folder exists, and no stale ``.next`` is left over."""
    folder.mkdir(parents=True, exist_ok=True)
    for service in services:
        shutil.rmtree(upcoming(folder, service), ignore_errors=True)


def promote(folder: Path, services: Sequence[str]) -> list[str]:
    """Replace each service's cache with the export its build just finished; return those."""
    done = []
    for service in services:
        new = upcoming(folder, service)
        if not filled(new):
            shutil.rmtree(new, ignore_errors=True)
            continue
        old = current(folder, service)
        shutil.rmtree(old, ignore_errors=True)
        new.rename(old)
        done.append(service)
    return done


@dataclass(frozen=True)
class Usage:
    """The project's local cache after a build: its size, the limit, what was pruned."""

    folder: str
    bytes: int
    limit: int
    pruned: tuple[str, ...] = ()


def entries(folder: Path) -> list[Path]:
    """The service cache folders (and leftover exports) in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and not path.is_symlink()]
    return sorted(found, key=lambda path: path.stat().st_mtime)


def bound(folder: Path, limit: int, keep: Sequence[str] = ()) -> Usage:
    """Remove the least recently built caches until the folder fits ``limit`` bytes; the
    services in ``keep`` (just built) go last, and only when they alone are too large."""
    sizes = {path: size(path) for path in entries(folder)}
    total = sum(sizes.values())
    order = sorted(sizes, key=lambda path: path.name in keep)  # stable: oldest first
    pruned = []
    for path in order:
        if total <= limit:
            break
        shutil.rmtree(path, ignore_errors=True)
        total -= sizes[path]
        pruned.append(path.name)
    return Usage(str(folder), total, limit, tuple(pruned))
