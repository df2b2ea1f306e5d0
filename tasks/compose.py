"""Talking to ``docker compose``: find the files, resolve the project, run argv lists."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.errors import UserError
from tasks.settings import Settings

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


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


def command(
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


def base_argv(settings: Settings, files: Sequence[Path]) -> list[str]:
    """``docker compose`` for the project as the settings describe it."""
    return command(
        str(settings.project_dir),
        [str(path) for path in files],
        settings.project_name,
        settings.profiles,
        extra_env_file(settings),
    )


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for compose: ours plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    return env


def version() -> str:
    """Compose v2's version, or a UserError saying it is missing."""
    try:
        done = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True, check=False
        )
    except OSError:
        raise UserError("the docker CLI is not installed (needed for 'docker compose')") from None
    text = done.stdout.strip()
    if done.returncode != 0 or not text or text.lstrip("v").split(".")[0] != "2":
        raise UserError(
            "Compose v2 is not available: 'docker compose version' failed"
            " (install the compose plugin in ~/.docker/cli-plugins/docker-compose)"
        )
    return text.lstrip("v")


def load_project(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The fully resolved project from ``docker compose config --format json``."""
    try:
        done = subprocess.run(
            [*argv, "config", "--format", "json"],
            capture_output=True,
            text=True,
            env=dict(env),
            check=False,
        )
    except OSError:
        raise UserError("the docker CLI is not installed (needed for 'docker compose')") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise UserError(f"compose config failed: {lines[-1] if lines else 'no output'}")
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise UserError(f"compose config printed invalid JSON: {exc}") from None
    return data


def resolve(settings: Settings, files: Sequence[Path], commit: str) -> dict[str, Any]:
    """The project as compose resolves it, with the commit variable set as the build will set it."""
    return load_project(base_argv(settings, files), environment({settings.commit_arg: commit}))


def run(argv: Sequence[str], env: Mapping[str, str], on_line: Callable[[str], None]) -> int:
    """Run argv, passing each merged stdout/stderr line to ``on_line``; return the exit code."""
    with subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env),
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
