"""A service's build inputs as one digest: everything BuildKit reads for it, so that a service
whose inputs did not change need not be built again.

The digest covers the Dockerfile, every context file that passes ``.dockerignore`` (its path,
whether it is executable or a symlink, and its git blob id: git's own id for a tracked file
unchanged since the index, the same id computed from the content for the rest, untracked files
included), ``additional_contexts`` (folders the same way, other kinds by name), the resolved
build section (args after interpolation, target, platforms, secret and ssh ids: never values),
the build args the tool adds, the image id of every base image, and the cache strategy.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compose_tasks.docker import commands
from compose_tasks.docker.runner import Runner
from compose_tasks.dockerfile.dockerignore import ignored
from compose_tasks.errors import UserError

# Keys of a build section the digest leaves to other parts (or that do not change the image).
_NOT_INPUTS = ("context", "dockerfile", "cache_from", "cache_to", "tags", "additional_contexts")


@dataclass(frozen=True)
class GitIndex:
    """A repository's index: the blob id of each tracked file unchanged since it was staged."""

    root: Path
    ids: Mapping[str, str]  # path relative to ``root`` -> blob id


def git_index(runner: Runner, folder: Path) -> GitIndex | None:
    """The index of the repository ``folder`` is in (None outside one): two git commands."""
    top = runner.run(commands.git("-C", str(folder), "rev-parse", "--show-toplevel"))
    if not top.ok:
        return None
    root = Path(top.out.strip())
    listed, changed = runner.run_all(
        [
            commands.git("-C", str(root), "ls-files", "-s", "-z"),
            commands.git("-C", str(root), "diff-files", "--name-only", "-z"),
        ]
    )
    if not (listed.ok and changed.ok):
        return None
    dirty = set(changed.out.split("\0"))
    ids: dict[str, str] = {}
    for entry in filter(None, listed.out.split("\0")):
        meta, _, path = entry.partition("\t")
        _, blob, stage = meta.split()
        if stage == "0" and path not in dirty:
            ids[path] = blob
    return GitIndex(root, ids)


def blob_id(data: bytes) -> str:
    """The id git gives a file with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def ignore_lines(context: Path, dockerfile: Path) -> list[str]:
    """The ignore file BuildKit uses: ``<Dockerfile>.dockerignore`` first, else the context's."""
    for path in (dockerfile.parent / f"{dockerfile.name}.dockerignore", context / ".dockerignore"):
        if path.is_file():
            return path.read_text(errors="replace").splitlines()
    return []


def _files(root: Path, patterns: Sequence[str]) -> Iterator[str]:
    """Every file below ``root`` the ignore lines let through, as sorted relative paths."""
    negations = any(line.strip().startswith("!") for line in patterns)
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        if not negations:  # a folder left out is not walked (a negation could bring files back)
            dirs[:] = [name for name in dirs if not ignored(patterns, prefix + name)]
        dirs.sort()
        for name in sorted(files):
            if not ignored(patterns, prefix + name):
                yield prefix + name
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                yield prefix + name  # os.walk does not descend into it: the link is the input


def context_files(root: Path, patterns: Sequence[str], index: GitIndex | None) -> dict[str, str]:
    """Each file of a build context (or named context folder) the ignore lines let through,
    by relative path, in order: its kind and blob id (``x <id>``, ``f <id>``, ``l <target>``)."""
    base = root.resolve()
    ids: Mapping[str, str] = {}
    if index is not None and base.is_relative_to(index.root):
        where = base.relative_to(index.root).as_posix()
        prefix = "" if where == "." else f"{where}/"
        ids = {rel[len(prefix) :]: i for rel, i in index.ids.items() if rel.startswith(prefix)}
    found: dict[str, str] = {}
    for rel in _files(root, patterns):
        path = root / rel
        try:
            found[rel] = _entry(path, ids.get(rel))
        except OSError as exc:
            raise UserError(f"cannot read {path} (a build input): {exc.strerror}") from None
    return found


def files_digest(files: Mapping[str, str]) -> str:
    """The digest of files as ``context_files`` lists them."""
    digest = hashlib.sha256()
    for rel, entry in files.items():
        digest.update(f"{rel}\0{entry}\n".encode())
    return digest.hexdigest()


def folder_digest(root: Path, patterns: Sequence[str], index: GitIndex | None) -> str:
    """The digest of a build context (or a named context folder)."""
    return files_digest(context_files(root, patterns, index))


def _entry(path: Path, known: str | None) -> str:
    """One context file as the digest takes it: its kind and its blob id (``known``: the one
    git's index has for it), or its link target."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return f"l {path.readlink()}"
    if not stat.S_ISREG(mode):
        return "s"  # a socket or pipe: never read (a pipe would block)
    kind = "x" if mode & 0o111 else "f"
    return f"{kind} {known or blob_id(path.read_bytes())}"


def service_digest(
    dockerfile: bytes,
    context: str,
    build: Mapping[str, Any],
    named: Mapping[str, str],
    args: Mapping[str, str],
    bases: Mapping[str, str],
    strategy: Sequence[str],
) -> str:
    """One service's inputs as a digest: the Dockerfile's bytes, its context's digest, the
    build section (without what the other parts cover), each named context (folder digest or
    name), the tool's build args, each base image's id, and the cache strategy's entries."""
    data = {
        "dockerfile": hashlib.sha256(dockerfile).hexdigest(),
        "context": context,
        "build": {key: value for key, value in build.items() if key not in _NOT_INPUTS},
        "named": dict(named),
        "args": dict(args),
        "bases": dict(bases),
        "strategy": list(strategy),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
