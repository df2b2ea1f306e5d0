"""The compose project: find its files and resolve it with ``docker compose config``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from compose_tasks.docker import commands
from compose_tasks.docker.runner import NOT_FOUND, Runner, meaningful_line
from compose_tasks.errors import UserError
from compose_tasks.settings import Settings

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
    """The fully resolved project from ``docker compose config --format json``; where compose
    cannot print a project as JSON (compose 2.40 fails on an ``ssh`` key file entry: "error
    calling MarshalJSON for type types.SSHKey"), from its YAML form."""
    done = runner.run([*argv, "config", "--format", "json"], env)
    if done.code == NOT_FOUND and not done.out:
        raise UserError(done.err)
    if not done.ok:
        data = _from_yaml(runner, argv, env)
        if data is None:
            why = meaningful_line(done.err) or meaningful_line(done.out) or f"exit {done.code}"
            raise UserError(f"compose config failed: {why}")
        return data
    try:
        found: dict[str, Any] = json.loads(done.out)
    except json.JSONDecodeError as exc:
        raise UserError(f"compose config printed invalid JSON: {exc}") from None
    return found


def _from_yaml(
    runner: Runner, argv: Sequence[str], env: Mapping[str, str]
) -> dict[str, Any] | None:
    """The project from ``docker compose config`` (YAML) with each ``ssh`` entry as compose
    takes it (``id=path``; the YAML form prints ``'id: path'``); None when that fails too."""
    done = runner.run([*argv, "config"], env)
    if not done.ok:
        return None
    try:
        data = yaml.safe_load(done.out)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    for service in (data.get("services") or {}).values():
        build = (service or {}).get("build")
        if isinstance(build, dict) and isinstance(build.get("ssh"), list):
            build["ssh"] = [_ssh_entry(str(entry)) for entry in build["ssh"]]
    return data


def _ssh_entry(text: str) -> str:
    """``id: path`` (compose's YAML form of an ssh key entry) as ``id=path``."""
    key, sep, path = text.partition(": ")
    return f"{key}={path}" if sep and "=" not in key else text


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
