"""Build-input digests: what changes them and what does not (real files and real git, no
engine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from compose_tasks.buildplan import _fingerprint as fingerprint
from compose_tasks.buildplan._fingerprint import blob_id, folder_digest, git_index, service_digest
from compose_tasks.docker.runner import Runner
from compose_tasks.errors import UserError


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "app" / "src").mkdir(parents=True)
    (root / "app" / "src" / "main.py").write_text("print(1)\n")
    (root / "app" / "Dockerfile").write_text("FROM busybox:1.36\nCOPY . /app\n")
    (root / "app" / ".dockerignore").write_text("*.log\nnode_modules\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "one")
    return root


def digest(root: Path) -> str:
    context = root / "app"
    lines = fingerprint.ignore_lines(context, context / "Dockerfile")
    return folder_digest(context, lines, git_index(Runner(), context))


def test_the_blob_id_is_gits() -> None:
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_the_index_gives_the_ids_of_unchanged_tracked_files(tmp_path: Path) -> None:
    root = repo(tmp_path)
    index = git_index(Runner(), root / "app")
    assert index is not None and index.root == root.resolve()
    assert index.ids["app/src/main.py"] == blob_id(b"print(1)\n")
    (root / "app" / "src" / "main.py").write_text("print(2)\n")
    again = git_index(Runner(), root / "app")
    assert again is not None and "app/src/main.py" not in again.ids  # changed: hashed instead
    assert git_index(Runner(), tmp_path) is None  # not a repository


def test_what_changes_a_context_digest_and_what_does_not(tmp_path: Path) -> None:
    root = repo(tmp_path)
    app = root / "app"
    first = digest(root)
    (app / "debug.log").write_text("noise\n")  # excluded by .dockerignore
    (app / "node_modules" / "x").mkdir(parents=True)
    (app / "node_modules" / "x" / "index.js").write_text("x\n")
    assert digest(root) == first
    (app / "src" / "new.py").write_text("untracked\n")  # untracked files are sent too
    second = digest(root)
    assert second != first
    git(root, "add", "-A")  # staging changes no content: same digest
    assert digest(root) == second
    (app / "src" / "new.py").chmod(0o755)  # the mode is copied into the image
    third = digest(root)
    assert third != second
    (app / "src" / "link").symlink_to("new.py")
    fourth = digest(root)
    assert fourth != third
    (root / "README").write_text("beside the context, not in it\n")
    assert digest(root) == fourth


def test_a_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    root = repo(tmp_path)
    app = root / "app"
    (app / "Dockerfile.dockerignore").write_text("src\n")
    assert fingerprint.ignore_lines(app, app / "Dockerfile") == ["src"]
    before = digest(root)
    (app / "src" / "main.py").write_text("print(3)\n")
    assert digest(root) == before


def test_every_part_of_a_service_digest_counts() -> None:
    parts = {
        "dockerfile": b"FROM busybox:1.36\n",
        "context": "c1",
        "build": {"args": {"MODE": "x"}, "target": "final", "cache_from": ["a"]},
        "named": {"extra": "n1"},
        "args": {"BUILDKIT_INLINE_CACHE": "1"},
        "bases": {"busybox:1.36": "sha256:1"},
        "strategy": ["inline"],
    }
    base = service_digest(**parts)  # type: ignore[arg-type]
    changed = {
        "dockerfile": b"FROM busybox:1.37\n",
        "context": "c2",
        "build": {"args": {"MODE": "y"}, "target": "final", "cache_from": ["a"]},
        "named": {"extra": "n2"},
        "args": {},
        "bases": {"busybox:1.36": "sha256:2"},
        "strategy": ["cache folder"],
    }
    for key, value in changed.items():
        assert service_digest(**{**parts, key: value}) != base, key  # type: ignore[arg-type]
    target = {**parts, "build": {**parts["build"], "target": "base"}}  # type: ignore[dict-item]
    assert service_digest(**target) != base  # type: ignore[arg-type]
    same = {**parts, "build": {**parts["build"], "cache_from": ["b"]}}  # type: ignore[dict-item]
    assert service_digest(**same) == base  # type: ignore[arg-type]  # where the cache comes from


def test_an_unreadable_context_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repo(tmp_path)
    (root / "app" / "src" / "key.pem").write_text("x\n")  # untracked: its content is read
    denied = PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(denied))
    with pytest.raises(UserError, match=r"^cannot read .*key.pem \(a build input\): Permission"):
        digest(root)


def test_a_pipe_in_the_context_is_not_read(tmp_path: Path) -> None:
    root = repo(tmp_path)
    os.mkfifo(root / "app" / "src" / "events")
    assert len(digest(root)) == 64  # a read would block forever
