"""A resolved compose project kept between builds, reused only while nothing compose read changed.

``docker compose config`` costs about a third of a warm no-change build. Its result is kept in the
build folder and reused when one fingerprint still matches: the command line, the docker CLI and
compose plugin binaries, the CLI's config file, the content of every file compose may read (the
compose files, the files they ``include`` or ``extends``, ``env_file`` and ``label_file`` entries,
``.env`` files), and every environment variable compose may read (any whose name appears in those
files, and ``COMPOSE_*``, ``DOCKER_*``, ``HOME``). A reference the fingerprint cannot follow (a
variable in a path, a remote include, a file that does not parse) means no reuse. Only what a build
reads is kept: the project name, each service's ``image`` and ``build`` and the top-level
secrets' sources (no environment values).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from compose_tasks.docker.builder import cli_tools

NAME = "compose.resolved.json"
FORMAT = 3
# The commit variable's value while compose resolves a kept resolution: the kept data holds it
# where the commit goes, and each build puts its own commit there, so that a new commit (the
# everyday build) reuses the resolution. Used only for a commit of lowercase letters, digits,
# ``.``, ``_`` and ``-`` (a git sha, with or without a suffix): compose's lowercasing of a
# project name then changes neither.
PLACEHOLDER = "c0de7a5c" * 5
_PLAIN_COMMIT = re.compile(r"[0-9a-z._-]+")
BUILD_KEYS = ("image", "build")
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_PREFIXES = ("COMPOSE_", "DOCKER_", "BUILDX_")


class Unfollowable(Exception):
    """A compose file refers to something the fingerprint cannot cover."""


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads compose's own tags (``!reset``, ``!override``) as plain values."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _tagged)


def build_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a build reads of a resolved project (top-level secrets name their files and
    variables, never a value: the masking of a reused resolution reads them)."""
    services = data.get("services") or {}
    return {
        "name": data.get("name"),
        "services": {
            name: {key: service[key] for key in BUILD_KEYS if key in service}
            for name, service in services.items()
        },
        **({"secrets": data["secrets"]} if data.get("secrets") else {}),
    }


def _strings(value: Any) -> list[str]:
    """A path entry: a string, a list of strings, or ``{path: ...}`` items."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("path"), str | list):
        return _strings(value["path"])
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    raise Unfollowable(f"unexpected path entry {value!r}")


def _references(data: Any) -> Iterator[tuple[str, str]]:
    """(kind, path) for every file a compose file refers to; kind is ``compose`` or ``file``."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise Unfollowable("not a mapping")
    for item in data.get("include") or ():
        if isinstance(item, dict):
            if "project_directory" in item:
                raise Unfollowable("include with project_directory")
            yield from (("compose", path) for path in _strings(item.get("path") or []))
            yield from (("file", path) for path in _strings(item.get("env_file") or []))
        else:
            yield from (("compose", path) for path in _strings(item))
    services = data.get("services") or {}
    if not isinstance(services, dict):
        raise Unfollowable("services is not a mapping")
    for service in services.values():
        if not isinstance(service, dict):
            continue
        extends = service.get("extends")
        if isinstance(extends, dict) and "file" in extends:
            yield from (("compose", path) for path in _strings(extends["file"]))
        for key in ("env_file", "label_file"):
            yield from (("file", path) for path in _strings(service.get(key) or []))


def inputs(files: Sequence[Path], project_dir: Path, env_files: Sequence[Path]) -> list[Path]:
    """Every file compose may read for ``files`` (absent ones too); Unfollowable if unsure."""
    found: dict[Path, None] = dict.fromkeys([project_dir / ".env", *env_files])
    todo = list(files)
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        found[path] = None
        if not path.is_file():
            continue
        try:
            data = yaml.load(path.read_bytes(), Loader=_Loader)  # noqa: S506 - a SafeLoader
        except (OSError, yaml.YAMLError) as exc:
            raise Unfollowable(f"{path}: {exc}") from None
        for kind, ref in _references(data):
            if "$" in ref or "://" in ref or ref.startswith("git@"):
                raise Unfollowable(f"{path}: reference {ref!r}")
            for base in {path.parent, project_dir}:
                target = base / ref
                found[target] = None
                if kind == "compose":
                    todo.append(target)
                    found[target.parent / ".env"] = None
    return list(found)


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def fingerprint(argv: Sequence[str], environ: Mapping[str, str], paths: Sequence[Path]) -> str:
    """One hash over everything ``compose config`` with ``argv`` may read."""
    contents: list[bytes | None] = []
    for path in paths:
        try:
            contents.append(path.read_bytes())
        except OSError:
            contents.append(None)
    names = {word.decode() for data in contents if data for word in _WORD.findall(data)}
    variables = sorted(
        (key, value)
        for key, value in environ.items()
        if key in names or key.startswith(_PREFIXES) or key == "HOME"
    )
    files = [[str(path), _digest(data)] for path, data in zip(paths, contents, strict=True)]
    material = [FORMAT, list(argv), variables, files, cli_tools(environ, ("docker-compose",))]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


def load(cache: Path, argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The kept build view, when its fingerprint still matches; else None."""
    try:
        kept = json.loads(cache.read_text())
        paths = [Path(path) for path in kept["inputs"]]
        if kept["format"] == FORMAT and kept["key"] == fingerprint(argv, environ, paths):
            data: dict[str, Any] = kept["data"]
            return data
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def placeholder_for(commit: str) -> str:
    """The commit value to resolve with: the placeholder when ``commit`` can stand in for it,
    else the commit itself."""
    return PLACEHOLDER if _PLAIN_COMMIT.fullmatch(commit) else commit


def with_commit(data: Any, commit: str) -> Any:
    """``data`` with the placeholder replaced by ``commit`` in every string, keys too."""
    if isinstance(data, str):
        return data.replace(PLACEHOLDER, commit)
    if isinstance(data, dict):
        return {with_commit(key, commit): with_commit(value, commit) for key, value in data.items()}
    if isinstance(data, list):
        return [with_commit(item, commit) for item in data]
    return data


def entry(data: Mapping[str, Any], key: str, paths: Sequence[Path]) -> str:
    """The text to keep: ``data`` as resolved from ``paths`` under ``key`` (the fingerprint taken
    before compose ran, so a file changed meanwhile only makes the next run miss)."""
    kept = {"format": FORMAT, "key": key, "inputs": [str(p) for p in paths], "data": data}
    return json.dumps(kept)
