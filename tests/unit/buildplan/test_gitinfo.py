"""GIT_COMMIT_HASH resolution against real git checkouts (no engine)."""

from __future__ import annotations

from pathlib import Path

from compose_tasks.buildplan.gitinfo import UNKNOWN, GitInfo, resolve
from tests.support import sh


def checkout(path: Path) -> str:
    sh("git", "init", "-q", "-b", "feature/x", cwd=path)
    sh("git", "config", "user.email", "t@example.invalid", cwd=path)
    sh("git", "config", "user.name", "t", cwd=path)
    (path / "f.txt").write_text("1\n")
    sh("git", "add", "f.txt", cwd=path)
    sh("git", "commit", "-qm", "one", cwd=path)
    return sh("git", "rev-parse", "HEAD", cwd=path).stdout.strip()


def test_clean_checkout(tmp_path: Path) -> None:
    sha = checkout(tmp_path)
    info = resolve(tmp_path, {})
    assert (info.commit, info.dirty, info.source) == (sha, False, "git")
    assert info.tag == sha[:12]
    assert info.branch == "feature-x"


def test_dirty_tracked_file_adds_suffix(tmp_path: Path) -> None:
    sha = checkout(tmp_path)
    (tmp_path / "untracked.txt").write_text("ignored for dirtiness\n")
    assert resolve(tmp_path, {}).commit == sha
    (tmp_path / "f.txt").write_text("2\n")
    info = resolve(tmp_path, {})
    assert info.commit == f"{sha}-dirty"
    assert info.tag == f"{sha[:12]}-dirty"
    assert resolve(tmp_path, {}, dirty_suffix=False).commit == sha


def test_explicit_variable_then_ci_variables(tmp_path: Path) -> None:
    checkout(tmp_path)
    ci = "c" * 40
    assert resolve(tmp_path, {"GITHUB_SHA": ci}).commit == ci
    assert resolve(tmp_path, {"GITHUB_SHA": ci}).source == "environment GITHUB_SHA"
    explicit = resolve(tmp_path, {"GIT_COMMIT_HASH": "release/1.2", "GITHUB_SHA": ci})
    assert explicit.commit == "release/1.2"
    assert explicit.tag == "release-1.2"


def test_outside_a_checkout_is_unknown_with_warning(tmp_path: Path) -> None:
    info = resolve(tmp_path, {})
    assert info.commit == UNKNOWN
    assert info.tag == UNKNOWN
    assert "not a git checkout" in info.warning


def test_tag_keeps_short_shas_whole() -> None:
    assert GitInfo("abc1234", "x", False, "").tag == "abc1234"


def test_checkout_without_a_commit_is_unknown_with_warning(tmp_path: Path) -> None:
    sh("git", "init", "-q", "-b", "main", cwd=tmp_path)
    info = resolve(tmp_path, {})
    assert (info.commit, info.branch) == (UNKNOWN, "")
    assert "no commit yet" in info.warning


def test_detached_head_has_no_branch(tmp_path: Path) -> None:
    sha = checkout(tmp_path)
    sh("git", "checkout", "-q", "--detach", cwd=tmp_path)
    info = resolve(tmp_path, {})
    assert (info.commit, info.branch, info.dirty) == (sha, "", False)
