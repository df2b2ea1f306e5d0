"""What deploy, rollback and history act on: the project's name, the image repository of each
service it builds, the compose command for it and its resolved data. Made from the resolved
project alone: no build plan, no image or builder lookups, no Dockerfile read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compose_tasks.buildplan.plan import image_repo
from compose_tasks.docker import commands
from compose_tasks.settings import Settings


@dataclass(frozen=True)
class Deployment:
    """One project on one target, as a deploy brings a version of it up."""

    project: str
    images: Mapping[str, str]  # each service with a build section -> its image repository
    settings: Settings
    files: tuple[Path, ...]  # the compose files
    data: Mapping[str, Any]  # the resolved project (a swarm stack file is made from it)

    def refs(self, sha: str) -> dict[str, str]:
        """Each built service's image at ``sha``."""
        return {name: f"{repo}:{sha}" for name, repo in self.images.items()}

    def compose(self, *extra: str) -> list[str]:
        """``docker compose`` for the project, with ``extra`` compose files after its own."""
        files = [*map(str, self.files), *extra]
        settings = self.settings
        env_file = commands.extra_env_file(settings)
        return commands.compose(
            str(settings.project_dir), files, self.project, settings.profiles, env_file
        )

    @property
    def commit_var(self) -> str:
        return self.settings.commit_arg


def of(settings: Settings, files: Sequence[Path], data: Mapping[str, Any]) -> Deployment:
    """The deployment of a resolved project."""
    name = str(data.get("name") or settings.project_name)
    services: Mapping[str, Any] = data.get("services") or {}
    images = {
        service: image_repo(name, service, spec, settings.registry)
        for service, spec in services.items()
        if spec.get("build")
    }
    return Deployment(name, images, settings, tuple(files), data)
