"""The compose project: find its files and resolve it with ``docker compose config``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks import commands
from tasks.errors import UserError
from tasks.runner import NOT_FOUND, Runner
from tasks.settings import Settings

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_NAME_LINE = re.compile(r"^name:[ \t]*['\"]?([^'\"#\s]*)['\"]?[ \t]*(?:#.*)?$", re.MULTILINE)
_NOT_IN_NAME = re.compile(r"[^a-z0-9_-]")


def compose_files(settings: Settings) -> tuple[Path, ...]:
    """The project's compose files: from settings, else compose's default file and its override."""
    if settings.compose_files:
        files = tuple(settings.project_dir / name for name in settings.compose_files)
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise UserError(
                f"compose file not found: {', '.join(missing)} "
                f"(compose_files from {settings.sources['compose_files']})"
            )
        return files
    for name in DEFAULT_FILES:
        main = settings.project_dir / name
        if main.is_file():
            stem = name.rsplit(".", 1)[0]
            overrides = (settings.project_dir / f"{stem}.override.{ext}" for ext in ("yaml", "yml"))
            return (main, *[path for path in overrides if path.is_file()][:1])
    raise UserError(
        f"no compose file in {settings.project_dir} (looked for {', '.join(DEFAULT_FILES)};"
        " set COMPOSE_FILE or stack.compose_files)"
    )


def version(runner: Runner) -> str:
    """Compose v2's version, or a UserError saying it is missing."""
    done = runner.run(commands.compose_version())
    text = done.out.strip()
    if done.code == NOT_FOUND and not text:
        raise UserError(done.err)
    if not done.ok or not text or text.lstrip("v").split(".")[0] != "2":
        raise UserError(
            "Compose v2 is not available: 'docker compose version' failed"
            " (install the compose plugin in ~/.docker/cli-plugins/docker-compose)"
        )
    return text.lstrip("v")


def load_project(runner: Runner, argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The fully resolved project from ``docker compose config --format json``."""
    text = runner.check([*argv, "config", "--format", "json"], "compose config", env)
    try:
        data: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"compose config printed invalid JSON: {exc}") from None
    return data


def resolve(
    runner: Runner, settings: Settings, files: Sequence[Path], commit: str
) -> dict[str, Any]:
    """The project as compose resolves it, with the commit variable set as the build will set it;
    when compose fails, a missing or old compose gets its own, clearer message."""
    try:
        return load_project(
            runner, commands.compose_of(settings, files), {settings.commit_arg: commit}
        )
    except UserError:
        version(runner)
        raise


def project_name(settings: Settings) -> str:
    """The project name compose would use, read without compose (the compose files may be
    broken): the setting (``COMPOSE_PROJECT_NAME``), else the last top-level ``name:`` line of
    the compose files, else the project folder's name, normalised as compose does. A name
    built from a variable needs compose: ''."""
    if settings.project_name:
        return settings.project_name
    try:
        files = compose_files(settings)
    except UserError:
        files = ()
    named = ""
    for path in files:
        try:
            found = _NAME_LINE.findall(path.read_text(errors="replace"))
        except OSError:
            continue
        named = found[-1] if found else named
    if "$" in named:
        return ""
    return _NOT_IN_NAME.sub("", (named or settings.project_dir.name).lower()).lstrip("_-")
