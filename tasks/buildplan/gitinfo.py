"""GIT_COMMIT_HASH: which commit is being built, and whether the tree is dirty."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from compose_tasks.docker import commands
from compose_tasks.docker.runner import Runner
from compose_tasks.errors import UserError
from compose_tasks.settings import Settings

UNKNOWN = "unknown"
CI_SHA_VARS = ("GITHUB_SHA", "CI_COMMIT_SHA")
CI_BRANCH_VARS = ("GITHUB_REF_NAME", "CI_COMMIT_REF_NAME")
SHORT = 12
_LONG_SHA = re.compile(r"^[0-9a-f]{13,64}$")
_COMMIT_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./+-]{0,199}$")


def _given(environ: Mapping[str, str], name: str) -> str:
    """A commit given in a variable: a sha or a ref-like name, nothing a shell or compose reads."""
    value = environ.get(name, "")
    if value and not _COMMIT_VALUE.match(value):
        raise UserError(
            f"invalid {name}={value!r} (from the environment): expected a commit sha or a name of "
            "letters, digits and '_./+-'"
        )
    return value


@dataclass(frozen=True)
class GitInfo:
    """The commit identity of a build."""

    commit: str  # full sha, '-dirty' appended when enabled and the tree is dirty
    source: str  # where it came from
    dirty: bool
    branch: str  # '' when unknown or detached
    warning: str = ""

    @property
    def tag(self) -> str:
        """Short form for image tags: 12 hex digits, plus '-dirty' if set."""
        sha, dash, suffix = self.commit.partition("-")
        if _LONG_SHA.match(sha):
            return sha[:SHORT] + dash + suffix
        return tag_safe(self.commit) or UNKNOWN


@dataclass(frozen=True)
class _Status:
    """What one ``git status`` says about a checkout."""

    sha: str  # '' before the first commit
    branch: str  # '' when detached
    dirty: bool  # a tracked file differs from HEAD


def _status(project_dir: Path) -> _Status | None:
    """Commit, branch and dirtiness in one ``git status`` call; None outside a checkout."""
    done = Runner().run(
        commands.git("status", "--porcelain=v2", "--branch", "--untracked-files=no"),
        cwd=project_dir,
    )
    if not done.ok:
        return None
    sha = branch = ""
    dirty = False
    for line in done.out.splitlines():
        if line.startswith("# branch.oid "):
            sha = line.split(" ", 2)[2].strip().removeprefix("(initial)")
        elif line.startswith("# branch.head "):
            branch = line.split(" ", 2)[2].strip().removeprefix("(detached)")
        elif line and not line.startswith("#"):
            dirty = True
    return _Status(sha, branch, dirty)


def tag_safe(name: str) -> str:
    """A branch name made usable as a docker tag."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip(".-")
    return cleaned[:128]


def resolve(
    project_dir: Path,
    environ: Mapping[str, str],
    var: str = "GIT_COMMIT_HASH",
    dirty_suffix: bool = True,
) -> GitInfo:
    """An explicit variable wins, then CI variables, then git; ``unknown`` outside a checkout."""
    branch = next((environ[v] for v in CI_BRANCH_VARS if environ.get(v)), "")
    status = _status(project_dir)
    branch = branch or (status.branch if status else "")
    if _given(environ, var):
        value = environ[var]
        return GitInfo(value, f"environment {var}", value.endswith("-dirty"), tag_safe(branch))
    for name in CI_SHA_VARS:
        if _given(environ, name):
            return GitInfo(environ[name], f"environment {name}", False, tag_safe(branch))
    if status is None or not status.sha:
        why = "not a git checkout" if status is None else "no commit yet"
        return GitInfo(
            UNKNOWN,
            "none",
            False,
            "",
            f"{project_dir}: {why}; {var} is '{UNKNOWN}' (set {var} to override)",
        )
    commit = f"{status.sha}-dirty" if status.dirty and dirty_suffix else status.sha
    return GitInfo(commit, "git", status.dirty, tag_safe(branch))


def of(settings: Settings) -> GitInfo:
    """The commit identity of the project the settings describe."""
    return resolve(settings.project_dir, os.environ, settings.commit_arg, settings.dirty_suffix)
