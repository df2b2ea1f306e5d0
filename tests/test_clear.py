"""clear-caches without an engine: sizes, base-image discovery, and what is removed on an
in-memory engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit

from tasks import clear, engine
from tasks.clear import carry_out, collect
from tasks.errors import UserError
from tasks.pipeline import Prepared, Project, base_images
from tasks.refs import ownership
from tasks.runner import Runner
from tasks.settings import load
from tasks.sizes import human, parse_size
from tests.fakes import FakeDocker
from tests.support import GIT, plan_for, project


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("10GB", 10 * 1000**3), ("1GiB", 1024**3), ("2m", 2 * 1000**2), ("1.5kB", 1500)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "10i", "1e9", "-5GB", "9" * 40, "10 GiBs", ""])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(UserError, match="invalid size"):
        parse_size(text)


def test_human() -> None:
    assert (human(999), human(1500), human(2_500_000)) == ("999B", "1.5kB", "2.5MB")


def test_base_images_skip_stages_and_scratch(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM --platform=linux/amd64 node:20 AS build\nRUN x\nFROM build AS test\n"
        "FROM scratch\nFROM nginx:1.27\nCOPY --from=build /a /b\n"
    )
    plan = plan_for(project(web={"build": {"context": str(tmp_path)}}), tmp_path)
    assert base_images(plan) == ["node:20", "nginx:1.27"]


def test_only_ours_is_removed_on_an_in_memory_engine(tmp_path: Path) -> None:
    """Our tags go; a foreign tag in our repository, another project's image and the base
    image stay, each with the reason; the builder cache is pruned and counted."""
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN true\n")
    compose = project(api={"build": {"context": str(tmp_path)}})
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    plan = plan_for(compose, tmp_path, settings=settings)
    client = FakeDocker()
    client.images.add("shop-api:abc123abc123", ownership("shop", "api"))
    client.images.add("shop-api:latest", ownership("shop", "api"))
    client.images.add("shop-api:theirs", {})  # tagged into our repository by someone else
    client.images.add("blog-api:latest", ownership("blog", "api"))  # another project
    client.images.add("busybox:1.36", {})
    docker = engine.Engine(Runner(), client)
    prepared = Prepared(Project(settings, (), GIT, compose), plan, docker)
    items = collect(prepared, settings)
    kinds = {(item.kind, item.name): item for item in items}
    assert not kinds["image", "shop-api:abc123abc123"].kept
    assert kinds["image", "shop-api:theirs"].kept.startswith("not ours")
    assert ("image", "blog-api:latest") not in kinds and ("image", "busybox:1.36") not in kinds
    reclaimed = carry_out(prepared, items, None, settings)
    assert client.api.removed == ["shop-api:abc123abc123", "shop-api:latest"]
    assert [i.tags for i in client.images.all[2:]] == [
        ["shop-api:theirs"],
        ["blog-api:latest"],
        ["busybox:1.36"],
    ]
    assert client.api.pruned == {"all": True, "keep_storage": None}
    assert reclaimed["builder cache"] == 4096 and reclaimed["images"] == 2000
    assert all(item.ok for item in items)


def test_the_task_lists_on_a_dry_run_refuses_without_yes_and_clears_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN true\n")
    compose = project(api={"build": {"context": str(tmp_path)}})
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    client = FakeDocker()
    client.images.add("shop-api:latest", ownership("shop", "api"))
    plan = plan_for(compose, tmp_path, settings=settings)
    prepared = Prepared(Project(settings, (), GIT, compose), plan, engine.Engine(Runner(), client))
    monkeypatch.setattr(clear, "settings_of", lambda c: settings)
    monkeypatch.setattr(clear, "prepare", lambda settings, docker, services: prepared)
    clear.clear_caches(MockContext(), dry_run=True, json=True)
    listed = json.loads(capsys.readouterr().out)
    assert (
        listed["dry_run"]
        and {"kind": "image", "result": "would remove"}.items() <= {**listed["items"][0]}.items()
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    with pytest.raises(Exit, match="refusing to remove 2 items without --yes"):
        clear.clear_caches(MockContext())
    assert client.api.removed == []  # nothing was removed
    clear.clear_caches(MockContext(), yes=True)
    assert client.api.removed == ["shop-api:latest"]
    assert "reclaimed: images 1.0kB, builder cache 4.1kB" in capsys.readouterr().out
