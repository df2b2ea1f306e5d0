"""Shared settings: declared once, resolved once, validated once, with where each value came from.

Precedence, lowest to highest: the defaults declared here (``ns.configure``), invoke config
files (``invoke.yaml``), the project's ``.env`` file, the process environment
(``INVOKE_STACK_<NAME>`` or compose's own variable), and task flags.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from compose_tasks import mask, sizes
from compose_tasks.errors import UserError, first_line
from compose_tasks.mask import MASK, is_secret

SECTION = "stack"
ENV_PREFIX = "INVOKE_STACK_"
TOOL_DIR = "compose-tasks"

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables with another meaning to the shell, docker, compose or BuildKit: never the commit arg.
_RESERVED_ARG = re.compile(
    r"^(PATH|HOME|USER|SHELL|PWD|OLDPWD|LANG|LC_\w+|TERM|HOSTNAME|TMPDIR|TZ|IFS|PS\d|"
    r"LD_\w+|PYTHON\w*|(HTTPS?|FTP|NO|ALL)_PROXY|(DOCKER|COMPOSE|BUILDKIT|BUILDX|INVOKE)_\w*)$",
    re.IGNORECASE,
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _text(raw: Any) -> str:
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ValueError("a string")
    return str(raw)


def _flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("true or false (1/0, yes/no, on/off)")


def _count(limit: int) -> Callable[[Any], int]:
    """A parser for a whole number from 0 to ``limit``."""

    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"a whole number from 0 to {limit}")
        text = str(raw).strip()
        if not re.fullmatch(r"\d{1,12}", text) or int(text) > limit:
            raise ValueError(f"a whole number from 0 to {limit}")
        return int(text)

    return parse


def _path_list(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list | tuple):
        items = [_text(item) for item in raw]
    else:
        separator = os.environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        items = _text(raw).split(separator)
    return tuple(item.strip() for item in items if item.strip())


def _name_list(raw: Any) -> tuple[str, ...]:
    items = (
        [_text(item) for item in raw] if isinstance(raw, list | tuple) else _text(raw).split(",")
    )
    return tuple(item.strip() for item in items if item.strip())


_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def _registry(raw: Any) -> str:
    text = _text(raw).strip().rstrip("/")
    if text and (
        not _REGISTRY.match(text) or ("/" not in text and "." not in text and ":" not in text)
    ):
        raise ValueError(
            "a registry host with an optional path, lowercase (127.0.0.1:5000/team, ghcr.io/org)"
        )
    return text


class Orchestrator(StrEnum):
    """Where a deploy runs: containers on one engine, or a Swarm stack."""

    COMPOSE = "compose"
    SWARM = "swarm"


def _orchestrator(raw: Any) -> Orchestrator:
    text = _text(raw).strip().lower()
    if text not in set(Orchestrator):
        raise ValueError("compose or swarm")
    return Orchestrator(text)


def _project_name(raw: Any) -> str:
    text = _text(raw).strip()
    if text and not _PROJECT_NAME.match(text):
        raise ValueError("lowercase letters, digits, '-' and '_', starting with a letter or digit")
    return text


def _arg_name(raw: Any) -> str:
    text = _text(raw).strip()
    if not _ARG_NAME.match(text):
        raise ValueError("a build-arg name (letters, digits, '_')")
    if _RESERVED_ARG.match(text):
        raise ValueError(
            "a build-arg name that is not a variable with another meaning "
            "(PATH, HOME, DOCKER_*, COMPOSE_*, ...)"
        )
    return text


def _size(raw: Any) -> int:
    try:
        return sizes.parse_size(_text(raw))
    except UserError:
        raise ValueError("a size such as 10GB, 512MiB or 0 (no local cache)") from None


def _relative_path(raw: Any) -> str:
    text = _text(raw).strip()
    if "\0" in text or len(text) > 4096:
        raise ValueError("a path")
    return text


@dataclass(frozen=True)
class Spec:
    """One setting: its default, how to parse it, which variables can set it, and its help."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    env: tuple[str, ...] = ()

    @property
    def env_names(self) -> tuple[str, ...]:
        return (*self.env, ENV_PREFIX + self.name.upper())


SPECS: tuple[Spec, ...] = (
    Spec("project_dir", ".", _relative_path, "directory of the compose project (relative to cwd)"),
    Spec(
        "env_file",
        ".env",
        _relative_path,
        "env file read for settings and masking, inside project_dir",
    ),
    Spec(
        "compose_files",
        "",
        _path_list,
        "compose files (separated like COMPOSE_FILE); empty: compose's default lookup",
        ("COMPOSE_FILE",),
    ),
    Spec(
        "project_name",
        "",
        _project_name,
        "compose project name; empty: compose's default",
        ("COMPOSE_PROJECT_NAME",),
    ),
    Spec("profiles", "", _name_list, "compose profiles, comma separated", ("COMPOSE_PROFILES",)),
    Spec(
        "build_dir",
        "",
        _relative_path,
        "folder for generated files; empty: outside the project, under the user's cache directory",
    ),
    Spec("commit_arg", "GIT_COMMIT_HASH", _arg_name, "build arg / env var carrying the commit"),
    Spec("dirty_suffix", True, _flag, "append -dirty to the commit when tracked files changed"),
    Spec(
        "branch_tag", False, _flag, "also tag images :<branch> and use that tag as a cache source"
    ),
    Spec(
        "inline_cache",
        True,
        _flag,
        "build with BUILDKIT_INLINE_CACHE=1 so images serve as cache (off when cache_to is set)",
    ),
    Spec(
        "cache_size",
        "10GB",
        _size,
        "limit of the project's local build-cache folders (builders that export cache: the "
        "containerd image store, docker-container); least recently built go first; 0: none",
    ),
    Spec("pull", False, _flag, "always try to pull newer base images"),
    Spec("deploy_timeout", 120, _count(86400), "seconds a deploy waits for health checks"),
    Spec("keep_images", 5, _count(1000), "sha-tagged images kept per service after a deploy"),
    Spec(
        "lock_lease",
        60,
        _count(86400),
        "seconds a deploy lock holds without renewal; then the next deploy takes it",
    ),
    Spec(
        "lock_heartbeat",
        10,
        _count(3600),
        "seconds between renewals of a held deploy lock (well inside lock_lease)",
    ),
    Spec(
        "registry",
        "",
        _registry,
        "registry prefix for image names (e.g. 127.0.0.1:5000/team, ghcr.io/org); the shared cache",
    ),
    Spec("push", False, _flag, "push images and cache tags to the registry after a build"),
    Spec(
        "affected",
        False,
        _flag,
        "build only the services whose inputs changed; re-tag the others' earlier images",
    ),
    Spec(
        "require_cache",
        False,
        _flag,
        "fail a build (exit 3) when a step predicted cached ran or a declared cache source "
        "could not be read: a CI gate for a cache that stopped working",
    ),
    Spec(
        "orchestrator",
        "compose",
        _orchestrator,
        "deploy target: compose (containers on one engine) or swarm (a stack with rolling updates)",
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
# Settings that existed once: naming one is an error that says what replaced it.
REMOVED = {"state_dir": "deploy state lives on the target now (invoke history shows it)"}


def _configured(default: Any) -> Any:
    # invoke casts INVOKE_STACK_* variables to the type of the configured default and crashes
    # on a bad int before any task runs; numbers are therefore declared as text and parsed here.
    return str(default) if isinstance(default, int) and not isinstance(default, bool) else default


def defaults() -> dict[str, Any]:
    """The settings section as declared for ``ns.configure``."""
    return {SECTION: {spec.name: _configured(spec.default) for spec in SPECS}}


@dataclass(frozen=True)
class Settings:
    """Effective, validated settings and where each came from."""

    project_dir: Path
    env_file: Path
    compose_files: tuple[str, ...]
    project_name: str
    profiles: tuple[str, ...]
    build_dir: Path  # resolved; outside the project unless set
    commit_arg: str
    dirty_suffix: bool
    branch_tag: bool
    inline_cache: bool
    cache_size: int
    pull: bool
    deploy_timeout: int
    keep_images: int
    lock_lease: int
    lock_heartbeat: int
    registry: str
    push: bool
    affected: bool
    require_cache: bool
    orchestrator: Orchestrator
    sources: Mapping[str, str] = field(default_factory=dict)
    dotenv: Mapping[str, str] = field(default_factory=dict)
    # local build-cache folders, one per service: outside the project, beside the build folder
    cache_dir: Path = Path()


def _pick(
    spec: Spec,
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
    dotenv_label: str,
    config: Mapping[str, Any],
) -> tuple[Any, str]:
    if flags.get(spec.name) is not None:
        return flags[spec.name], f"flag --{spec.name.replace('_', '-')}"
    for name in spec.env_names:
        if name in environ:
            return environ[name], f"environment {name}"
    for name in spec.env_names:
        if name in dotenv:
            return dotenv[name], f"{dotenv_label} {name}"
    if spec.name in config and config[spec.name] not in (spec.default, _configured(spec.default)):
        return config[spec.name], "invoke config"
    return spec.default, "default"


def _parse(spec: Spec, raw: Any, source: str) -> Any:
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise UserError(
            f"invalid setting {spec.name}={raw!r} (from {source}): expected {exc}"
        ) from None


def _unknown(name: str, key: str, source: str) -> UserError:
    """The error for a setting ``key`` (spelled ``name`` in its source) that does not exist."""
    if key in REMOVED:
        return UserError(f"setting {name} (from {source}) was removed: {REMOVED[key]}")
    [near] = difflib.get_close_matches(key, list(SPEC_BY_NAME), n=1, cutoff=0.5) or [""]
    if near:
        spelled = ENV_PREFIX + near.upper() if name.startswith(ENV_PREFIX) else near
        hint = f"did you mean {spelled}?"
    else:
        hint = "invoke config lists the settings"
    return UserError(f"unknown setting {name} (from {source}): {hint}")


def _check_names(
    config: Mapping[str, Any],
    origins: Mapping[str, str],
    variables: Mapping[str, Mapping[str, str]],
) -> None:
    """Every key of the settings section and every ``INVOKE_STACK_*`` variable names a setting."""
    for key in config:
        if key not in SPEC_BY_NAME:
            raise _unknown(key, key, origins.get(key, "invoke config"))
    for label, names in variables.items():
        for name in names:
            key = name[len(ENV_PREFIX) :].lower()
            if name.startswith(ENV_PREFIX) and key not in SPEC_BY_NAME:
                raise _unknown(name, key, f"{label} {name}")


def _read_dotenv(path: Path, raw: str, source: str) -> dict[str, str]:
    if not path.exists():
        return {}
    if not path.is_file():
        raise UserError(
            f"invalid setting env_file={raw!r} (from {source}): {path} is not a regular file"
        )
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read env file {path}: {first_line(exc)}") from None
    return {k: v for k, v in values.items() if v is not None}


def _inside(project_dir: Path, raw: str, name: str, source: str, may_be_file: bool = False) -> Path:
    """``raw`` resolved (symlinks too) strictly inside the project directory, else a UserError."""
    path = (project_dir / raw).resolve()
    if path == project_dir or not path.is_relative_to(project_dir):
        where = "the project directory itself" if path == project_dir else "outside the project"
        raise UserError(
            f"invalid setting {name}={raw!r} (from {source}): it resolves to {where} ({path}); "
            f"expected a path inside {project_dir}"
        )
    if not may_be_file and path.exists() and not path.is_dir():
        raise UserError(f"invalid setting {name}={raw!r} (from {source}): {path} is not a folder")
    return path


def _outside(project_dir: Path, environ: Mapping[str, str]) -> Path:
    """The project's own folder outside every build context: under the user's cache
    directory, one per project directory (``build/`` and ``cache/`` go in it)."""
    home = Path(environ.get("HOME") or Path.home())
    base = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    digest = hashlib.sha256(str(project_dir).encode()).hexdigest()[:12]
    return base / TOOL_DIR / f"{project_dir.name or 'root'}-{digest}"


def load(
    config: Mapping[str, Any],
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    origins: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting from flags, environment, env file, invoke config and defaults.

    ``origins`` names the config file each key of ``config`` came from, for error lines."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    base = cwd or Path.cwd()
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}

    def resolve(name: str, dotenv: Mapping[str, str], label: str) -> None:
        spec = SPEC_BY_NAME[name]
        raw, source = _pick(spec, flags, environ, dotenv, label, config)
        values[name] = _parse(spec, raw, source)
        sources[name] = source

    resolve("project_dir", {}, "")
    project_dir = (base / values["project_dir"]).resolve()
    if not project_dir.is_dir():
        raise UserError(
            f"invalid setting project_dir={values['project_dir']!r} "
            f"(from {sources['project_dir']}): not a directory"
        )
    resolve("env_file", {}, "")
    env_file = _inside(project_dir, values["env_file"], "env_file", sources["env_file"], True)
    dotenv = _read_dotenv(env_file, values["env_file"], sources["env_file"])
    mask.use(dotenv)
    label = f"env file {values['env_file']}"
    _check_names(config, origins or {}, {"environment": environ, label: dotenv})
    for spec in SPECS:
        if spec.name not in values:
            resolve(spec.name, dotenv, label)
    if not 0 < values["lock_heartbeat"] < values["lock_lease"]:
        raise UserError(
            f"invalid setting lock_heartbeat={values['lock_heartbeat']} (from "
            f"{sources['lock_heartbeat']}): expected at least 1 and less than lock_lease="
            f"{values['lock_lease']} (from {sources['lock_lease']}): a lease renewed less often "
            "than it lasts runs out under a live deploy"
        )
    own = _outside(project_dir, environ)
    build_dir = (
        _inside(project_dir, values["build_dir"], "build_dir", sources["build_dir"])
        if values["build_dir"]
        else own / "build"
    )
    paths = {
        "project_dir": project_dir,
        "env_file": env_file,
        "build_dir": build_dir,
        "cache_dir": own / "cache",
    }
    return Settings(**{**values, **paths}, sources=sources, dotenv=dotenv)


def describe(settings: Settings) -> dict[str, Any]:
    """Settings, sources and the env file's variables (secrets masked) as plain data."""
    rows = []
    for spec in SPECS:
        value = getattr(settings, spec.name)
        shown: Any = list(value) if isinstance(value, tuple) else value
        shown = str(shown) if isinstance(shown, Path) else shown
        rows.append(
            {
                "name": spec.name,
                "value": shown,
                "source": settings.sources[spec.name],
                "help": spec.help,
            }
        )
    env = {k: (MASK if is_secret(k) else v) for k, v in sorted(settings.dotenv.items())}
    return {"settings": rows, "env_file": str(settings.env_file), "env": env}
