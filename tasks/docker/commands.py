"""Every docker and compose command line, built in one place from plain data (no subprocess)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from compose_tasks import mask
from compose_tasks.docker.refs import LABEL_PROJECT
from compose_tasks.settings import Settings


def compose(
    project_dir: str,
    files: Sequence[str],
    project: str = "",
    profiles: Sequence[str] = (),
    env_file: str = "",
) -> list[str]:
    """``docker compose`` with a project's directory, files, name, profiles and env file."""
    argv = ["docker", "compose", "--project-directory", project_dir]
    for path in files:
        argv += ["-f", path]
    if project:
        argv += ["-p", project]
    for profile in profiles:
        argv += ["--profile", profile]
    if env_file:
        argv += ["--env-file", env_file]
    return argv


def extra_env_file(settings: Settings) -> str:
    """The env file to pass explicitly: compose reads ``.env`` in the project dir by itself."""
    path = settings.env_file
    return str(path) if path.name != ".env" and path.is_file() else ""


def compose_of(settings: Settings, files: Sequence[Path]) -> list[str]:
    """``docker compose`` for the project as the settings describe it."""
    return compose(
        str(settings.project_dir),
        [str(path) for path in files],
        settings.project_name,
        settings.profiles,
        extra_env_file(settings),
    )


def compose_version() -> list[str]:
    return ["docker", "compose", "version", "--short"]


def buildx_inspect() -> list[str]:
    return ["docker", "buildx", "inspect"]


def buildx_version() -> list[str]:
    return ["docker", "buildx", "version"]


# One line per image found: its tags, its digests, its labels, its id (all JSON).
IMAGE_FIELDS = (
    '{{json .RepoTags}}{{"\\t"}}{{json .RepoDigests}}{{"\\t"}}{{json .Config.Labels}}'
    '{{"\\t"}}{{json .Id}}'
)


def image_inspect(refs: Sequence[str]) -> list[str]:
    return ["docker", "image", "inspect", "--format", IMAGE_FIELDS, "--", *refs]


def images_labelled(labels: Mapping[str, str]) -> list[str]:
    """The local images carrying every one of ``labels``: a line each tag, its image's id."""
    filters = [part for k, v in labels.items() for part in ("--filter", f"label={k}={v}")]
    return ["docker", "image", "ls", *filters, "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"]


def image_tag(source: str, target: str) -> list[str]:
    return ["docker", "image", "tag", source, target]


def prune_ours(project: str) -> list[str]:
    """Remove the project's untagged images that carry our label and no container uses."""
    label = f"label={LABEL_PROJECT}={project}"
    return ["docker", "image", "prune", "--force", "--filter", label]


def server_version() -> list[str]:
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def engine_storage() -> list[str]:
    return ["docker", "info", "--format", "{{json .DriverStatus}}"]


def context_host(name: str) -> list[str]:
    return ["docker", "context", "inspect", name, "--format", "{{.Endpoints.docker.Host}}"]


def git(*args: str) -> list[str]:
    return ["git", *args]


def push(ref: str) -> list[str]:
    return ["docker", "push", "--quiet", ref]


def stack_deploy(stack_file: str, stack: str, registry: bool) -> list[str]:
    """With a registry: every image pinned to its digest there, and the CLI's credentials for
    it passed on to the nodes that pull; without one, the images on this engine as they are."""
    through = ["--resolve-image", "always", "--with-registry-auth"] if registry else []
    return [
        "docker", "stack", "deploy", "--prune",
        *(through or ["--resolve-image", "never"]), "-c", stack_file, stack,
    ]  # fmt: skip


def service_force_update(service: str) -> list[str]:
    """The same spec again, every task replaced (``update_config`` applies): a new update."""
    return ["docker", "service", "update", "--detach", "--force", service]


def stack_rm(stack: str) -> list[str]:
    return ["docker", "stack", "rm", stack]


def display_argv(argv: Sequence[str]) -> str:
    """A command for display, with secret values masked."""
    return mask.active().text(shlex.join(argv))
