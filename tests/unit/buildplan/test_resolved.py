"""Reusing a resolved compose project: reused while nothing compose reads changed, never after."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from compose_tasks.buildplan import _resolved as resolved
from compose_tasks.buildplan import generated, pipeline
from compose_tasks.buildplan.gitinfo import GitInfo
from compose_tasks.docker.runner import Result, Runner
from compose_tasks.settings import Settings, load
from tests.fakes import FakeCli
from tests.support import GIT, tree

SECRET = "s3cret-value-123"  # noqa: S105 - a stand-in, checked to stay out of the kept copy
COMPOSE = """\
services:
  api:
    build: ./api
    image: shop/api
    env_file: [app.env]
    environment:
      TOKEN: ${API_TOKEN:-none}
"""


def compose() -> FakeCli:
    """Answers ``compose config`` with a resolved project that counts the calls."""

    def config(argv: list[str]) -> Result:
        assert argv[-3:] == ["config", "--format", "json"]
        data: dict[str, Any] = {
            "name": "shop",
            "services": {
                "api": {
                    "build": {"context": "/p/api", "args": {"N": str(len(cli.calls))}},
                    "image": "shop/api",
                    "environment": {"TOKEN": SECRET},
                }
            },
        }
        return Result(tuple(argv), 0, json.dumps(data), "")

    cli = FakeCli(answers={"docker compose": config})
    return cli


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, FakeCli, Path]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "compose.yaml").write_text(COMPOSE)
    (root / "app.env").write_text("A=1\n")
    monkeypatch.setenv("API_TOKEN", SECRET)
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "cache")}, cwd=root)
    return settings, compose(), root


def resolve(settings: Settings, runner: Runner, git: GitInfo = GIT) -> dict[str, Any]:
    """Resolve as a build does, keeping the resolution as its ``execute`` does."""
    project = pipeline.resolve(settings, runner, git, reuse=True)
    pipeline.keep_resolution(project)
    return dict(project.data)


def test_reused_while_nothing_compose_reads_changes(
    setup: tuple[Settings, FakeCli, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, runner, root = setup
    first = resolve(settings, runner)
    api = {"build": {"context": "/p/api", "args": {"N": "1"}}, "image": "shop/api"}
    assert first == {"name": "shop", "services": {"api": api}}
    assert resolve(settings, runner) == first
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    (root / "notes.txt").write_text("not read by compose\n")
    assert (resolve(settings, runner), len(runner.calls)) == (first, 1)

    changes: list[Callable[[], object]] = [
        lambda: (root / "compose.yaml").write_text(COMPOSE + "# edited\n"),
        lambda: (root / "app.env").write_text("A=2\n"),
        lambda: (root / ".env").write_text("API_TOKEN=other\n"),
        lambda: monkeypatch.setenv("API_TOKEN", "changed"),
        lambda: monkeypatch.setenv("COMPOSE_PROFILES", "debug"),
    ]
    for count, change in enumerate(changes, start=2):
        change()
        assert resolve(settings, runner)["services"]["api"]["build"]["args"]["N"] == str(count)
        assert resolve(settings, runner)["services"]["api"]["build"]["args"]["N"] == str(count)
    assert len(runner.calls) == 1 + len(changes)


def test_a_new_commit_reuses_the_resolution_with_its_own_commit_in_place(
    setup: tuple[Settings, FakeCli, Path],
) -> None:
    """Compose resolves with a stand-in for the commit variable; each build puts its commit
    where the stand-in landed. A commit the stand-in cannot represent is resolved as it is."""
    settings, _, root = setup
    (root / "compose.yaml").write_text(COMPOSE + "x-commit: ${GIT_COMMIT_HASH}\n")

    def config(argv: list[str]) -> Result:
        commit = cli.envs[-1]["GIT_COMMIT_HASH"]
        build = {"context": "/p/api", "args": {"V": commit}, "labels": {f"at-{commit}": "x"}}
        data = {"name": "shop", "services": {"api": {"build": build, "image": "shop/api"}}}
        return Result(tuple(argv), 0, json.dumps(data), "")

    cli = FakeCli(answers={"docker compose": config})
    for sha in ("a" * 40, "b" * 40, "c" * 12 + "-dirty"):
        build = resolve(settings, cli, GitInfo(sha, "git", False, "main"))["services"]["api"]
        assert build["build"]["args"]["V"] == sha
        assert build["build"]["labels"] == {f"at-{sha}": "x"}
    assert len(cli.calls) == 1
    assert resolved.PLACEHOLDER in (settings.build_dir / resolved.NAME).read_text()
    odd = "Release 1.0"  # set by hand: compose may change it (a project name is lowercased)
    build = resolve(settings, cli, GitInfo(odd, "env", False, "main"))["services"]["api"]
    assert (build["build"]["args"]["V"], len(cli.calls)) == (odd, 2)


def test_resolving_writes_nothing_until_a_build_keeps_it(
    setup: tuple[Settings, FakeCli, Path],
) -> None:
    settings, runner, _ = setup
    pipeline.resolve(settings, runner, GIT, reuse=True)
    project = pipeline.resolve(settings, runner, GIT, reuse=True)
    assert len(runner.calls) == 2
    assert not settings.build_dir.exists()
    pipeline.keep_resolution(project)
    pipeline.resolve(settings, runner, GIT, reuse=True)
    assert len(runner.calls) == 2


def test_the_kept_copy_is_private_outside_the_project_and_holds_no_environment(
    setup: tuple[Settings, FakeCli, Path],
) -> None:
    settings, runner, root = setup
    before = tree(root)
    resolve(settings, runner)
    kept = settings.build_dir / resolved.NAME
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert not kept.is_relative_to(root)
    assert tree(root) == before
    assert SECRET not in kept.read_text()
    assert kept in generated.generated_files(settings)  # clear-caches removes it


def test_without_reuse_compose_always_runs_and_the_whole_project_comes_back(
    setup: tuple[Settings, FakeCli, Path],
) -> None:
    settings, runner, _ = setup
    pipeline.resolve(settings, runner, GIT)
    data = pipeline.resolve(settings, runner, GIT).data
    assert len(runner.calls) == 2
    assert data["services"]["api"]["environment"] == {"TOKEN": SECRET}


@pytest.mark.parametrize(
    "extra",
    [
        "    label_file: ${LABELS}/labels\n",
        "include:\n  - oci://registry.example/compose:1\n",
        "include:\n  - path: ../x.yaml\n    project_directory: ..\n",
    ],
)
def test_references_that_cannot_be_followed_are_never_reused(
    setup: tuple[Settings, FakeCli, Path], extra: str
) -> None:
    settings, runner, root = setup
    text = COMPOSE + extra if extra.startswith(" ") else extra + COMPOSE
    (root / "compose.yaml").write_text(text)
    for _ in range(3):
        resolve(settings, runner)
    assert len(runner.calls) == 3
    assert not (settings.build_dir / resolved.NAME).exists()


def test_inputs_follow_include_extends_env_and_label_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "compose.yaml").write_text(
        "include:\n  - sub/more.yaml\n"
        "services:\n  web:\n    extends: {file: base.yaml, service: web}\n"
        "    label_file: labels.txt\n"
        "    env_file:\n      - path: web.env\n        required: false\n"
    )
    (tmp_path / "sub" / "more.yaml").write_text("services:\n  db:\n    env_file: db.env\n")
    (tmp_path / "base.yaml").write_text("services:\n  web:\n    image: !reset null\n")
    found = set(resolved.inputs([tmp_path / "compose.yaml"], tmp_path, [tmp_path / ".env"]))
    wanted = {"compose.yaml", "sub/more.yaml", "sub/.env", "sub/db.env", "base.yaml"}
    wanted |= {"labels.txt", "web.env", ".env"}
    assert {tmp_path / name for name in wanted} <= found
