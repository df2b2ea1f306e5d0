"""Each Dockerfile of a run read once and parsed once, and its path as people see it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compose_tasks.dockerfile import contexts
from compose_tasks.dockerfile.instructions import Dockerfile, parse


def display_path(path: Path, base: Path) -> str:
    """A path relative to ``base`` when it lies inside it."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


class Reader:
    """The Dockerfiles of one run, each read once and parsed once: every part of a run that
    needs one (the plan's stage targets, the input digests and step keys, the checks, the
    lint) asks the run's reader. Paths are shown relative to ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._bytes: dict[Path, bytes] = {}
        self.reads = 0  # files read from disk

    def shown(self, path: Path) -> str:
        return display_path(path, self.base)

    def read(self, path: Path) -> bytes:
        """A Dockerfile's bytes (OSError when it cannot be read)."""
        key = (self.base / path).resolve()
        if key not in self._bytes:
            self._bytes[key] = key.read_bytes()
            self.reads += 1
        return self._bytes[key]

    def dockerfile(self, path: Path) -> Dockerfile:
        """A Dockerfile file, parsed (OSError when it cannot be read)."""
        return parse(self.read(path).decode(errors="replace"), self.shown(self.base / path))

    @staticmethod
    def inline(name: str, text: str) -> Dockerfile:
        """A service's ``dockerfile_inline``, parsed."""
        return parse(text, f"{name}: dockerfile_inline")

    def service(self, name: str, build: Mapping[str, Any]) -> Dockerfile | None:
        """A service's Dockerfile (file or ``dockerfile_inline``); None when it cannot be read
        here (a remote context, a missing file)."""
        context = str(build.get("context") or ".")
        if contexts.remote(context):
            return None
        if build.get("dockerfile_inline"):
            return self.inline(name, str(build["dockerfile_inline"]))
        try:
            return self.dockerfile(Path(context) / str(build.get("dockerfile") or "Dockerfile"))
        except OSError:
            return None
