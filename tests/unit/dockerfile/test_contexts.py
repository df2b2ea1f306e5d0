"""Where a build context lives, and a git context's commit (a local repository stands in for
the remote: ``git ls-remote`` reads both alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose_tasks.docker.runner import Runner
from compose_tasks.dockerfile.contexts import GitContext, Kind, git_commit, git_parts, kind, remote
from tests.support import sh


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("/project/app", Kind.FOLDER),
        ("./app", Kind.FOLDER),
        ("https://github.com/org/repo.git#main:sub", Kind.GIT),
        ("git@github.com:org/repo.git#v1", Kind.GIT),
        ("git://127.0.0.1/repo.git", Kind.GIT),
        ("github.com/org/repo", Kind.GIT),
        ("ssh://git@host/repo", Kind.GIT),
        ("https://example.com/context.tar.gz", Kind.URL),
        ("docker-image://busybox:1.36", Kind.IMAGE),
        ("service:base", Kind.SERVICE),
        ("target:base", Kind.TARGET),
        ("oci-layout:///layouts/x@sha256:abc", Kind.OCI),
    ],
)
def test_kind(text: str, found: Kind) -> None:
    assert kind(text) is found
    assert remote(text) == (found in (Kind.GIT, Kind.URL))


def test_git_parts() -> None:
    assert git_parts("https://h/r.git#main:sub/dir") == GitContext(
        "https://h/r.git", "main", "sub/dir"
    )
    assert git_parts("github.com/org/r") == GitContext("https://github.com/org/r", "", "")


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM busybox:1.36\n")
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "x",
       cwd=root)  # fmt: skip
    sh("git", "tag", "-a", "v1", "-m", "v1", cwd=root)
    return root, sh("git", "rev-parse", "HEAD", cwd=root).stdout.strip()


def test_git_commit_of_a_branch_a_tag_and_head(repository: tuple[Path, str]) -> None:
    root, commit = repository
    for ref in ("main", "v1", ""):
        assert git_commit(Runner(), f"{root}#{ref}") == (commit, ""), ref


def test_git_commit_of_a_commit_id_asks_nothing(tmp_path: Path) -> None:
    commit = "a" * 40
    assert git_commit(Runner(), f"{tmp_path}/nowhere.git#{commit}:sub") == (commit, "")


def test_git_commit_that_cannot_be_known_says_why(repository: tuple[Path, str]) -> None:
    root, _ = repository
    commit, why = git_commit(Runner(), f"{root}#no-such-branch")
    assert commit == ""
    assert why.startswith(f"git ls-remote {root} no-such-branch")
    commit, why = git_commit(Runner(), f"{root.parent}/missing.git#main")
    assert commit == ""
    assert "missing.git" in why
